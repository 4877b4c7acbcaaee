import { isMainThread, type MessagePort, parentPort, Worker, workerData } from "node:worker_threads";
import { type Config, isClusterMode } from "./config/load.js";
import { AppDirectory } from "./core/apps/apps.js";
import { sealingAppStore } from "./core/apps/sealed-app-store.js";
import { createReceiptRecorder } from "./core/delivery/delivery-receipts.js";
import type { Clock } from "./core/ports.js";
import { CodeSecrets } from "./core/secrets.js";
import { describeProviders } from "./delivery/provider-registry.js";
import { assembleDelivery, type Delivery } from "./delivery-root.js";
import { createOutageLog } from "./observability/log-throttle.js";
import {
  createForwardingDestination,
  createLogger,
  type RootLogger,
  writeForwardedLines,
} from "./observability/logger.js";
import { createDeliverySnapshots, type DeliverySnapshot } from "./observability/metrics.js";
import type { DeliveryBackend } from "./storage/backend.js";
import { createClusterDeliveryBackend } from "./storage/cluster/index.js";
import { startPurgeLoop } from "./storage/purge-loop.js";
import { createSqliteDeliveryBackend, sqlitePath } from "./storage/sqlite/index.js";

// The server delivers from a worker thread of its own: rendering, the dev inbox's writes, SMTP and
// the SMS vendors' signed HTTP calls then use another core instead of the request thread's time.
// This module is both halves: `startDeliveryThread` on the server's side, and, when loaded as
// that thread, the thread's own composition root (the end of this file).

const THREAD_ROLE = "verifyd-delivery";
// A thread that died (a bug, not a provider's failure: those are retried inside) is started again
// after this pause; its claims lapse and the new one delivers them.
const RESTART_DELAY_MS = 1_000;
// How long a restarted thread must run before `/readyz` counts delivery as up again.
const HEALTHY_AFTER_MS = 5_000;
// Under load the thread is woken at most this often, so that each claim takes the sends of many
// turns at once: fewer, larger claims and outcome commits cost the thread ~10% less CPU a message
// (measured at ~6k sends/s, bench/RESULTS.md). A send after a quiet spell is still woken for at once.
const WAKE_SPACING_MS = 20;
// The thread's counts reach the server at most this often, and only when they changed: a scrape
// (every 15 s or more) sees them at most this late, and a busy thread posts one message a second.
const METRICS_INTERVAL_MS = 1_000;

interface ThreadData {
  role: typeof THREAD_ROLE;
  config: Config;
  /** the server's resolved HMAC secrets, newest first (dev mode may have generated one) */
  secrets: string[];
}

type ToThread = "wake" | "stop";
/**
 * "stopped" once the thread is done; `log`: lines of its logger, written by the server's (one
 * writer); `metrics`: the outbox worker's counts since the thread started.
 */
type FromThread = "stopped" | { log: string } | { metrics: DeliverySnapshot };

export interface DeliveryThreadOptions {
  config: Config;
  secrets: string[];
  logger: RootLogger;
  /** the module run as the thread (tests substitute one); default: this module */
  entry?: URL;
  /** how long a restarted thread must run before it counts as up (default HEALTHY_AFTER_MS) */
  healthyAfterMs?: number;
}

/**
 * Delivery from a worker thread over its own connections to the store. The server keeps
 * what its HTTP side needs (the channels served, the status-callback readers) and tells the thread
 * when sends were committed; the thread drains the outbox as the in-process worker would.
 */
export function startDeliveryThread(options: DeliveryThreadOptions): Delivery {
  const { config, logger } = options;
  const entry = options.entry ?? new URL(import.meta.url);
  const healthyAfterMs = options.healthyAfterMs ?? HEALTHY_AFTER_MS;
  const data: ThreadData = { role: THREAD_ROLE, config, secrets: options.secrets };
  let thread: Worker | null = null;
  let running = false;
  let wakeQueued = false;
  let lastWakeAtMs = Number.NEGATIVE_INFINITY;
  let restartTimer: NodeJS.Timeout | undefined;
  // When the thread last started after failing; it counts as up once it has run a while since.
  let restartedAtMs: number | undefined;
  const snapshots = createDeliverySnapshots();

  const post = (message: ToThread) => thread?.postMessage(message);
  const spawn = () => {
    const started = new Worker(entry, { workerData: data });
    started.on("message", (message: FromThread) => {
      if (typeof message !== "object") return;
      if ("log" in message) writeForwardedLines(logger, message.log);
      else snapshots.received(message.metrics);
    });
    started.on("error", (error) => logger.error({ err: error }, "the delivery thread failed"));
    started.on("exit", (exitCode) => {
      // Its last counts came before its exit (one port keeps the order); a new thread counts from 0.
      snapshots.threadEnded();
      if (thread !== started) return;
      thread = null;
      if (!running) return;
      logger.error({ exitCode }, "the delivery thread stopped unexpectedly; starting it again");
      restartedAtMs = undefined;
      restartTimer = setTimeout(() => {
        restartedAtMs = performance.now();
        spawn();
      }, RESTART_DELAY_MS);
    });
    thread = started;
  };

  return {
    providers: describeProviders(config.providers, config.mode === "dev"),
    // The embedded store's delivery connection purges too (`openDeliveryBackend`), off the request
    // thread; the cluster's purge is PostgreSQL's work and stays with the server.
    purges: !isClusterMode(config),
    start() {
      if (running) return;
      running = true;
      spawn();
    },
    wake() {
      if (wakeQueued || !thread) return;
      // One message per turn of the event loop, however many sends the turn committed, and under
      // load one per WAKE_SPACING_MS (see there).
      wakeQueued = true;
      const fire = () => {
        wakeQueued = false;
        lastWakeAtMs = performance.now();
        post("wake");
      };
      const waitMs = lastWakeAtMs + WAKE_SPACING_MS - performance.now();
      if (waitMs > 0) setTimeout(fire, waitMs);
      else setImmediate(fire);
    },
    healthy() {
      if (!running) return true;
      if (thread === null) return false;
      // A thread that fails as it starts (a provider it cannot set up) is restarted every second:
      // it counts as up only once it has outlived a few restarts' time.
      return restartedAtMs === undefined || performance.now() - restartedAtMs > healthyAfterMs;
    },
    deliveryMetrics: () => snapshots.current(),
    async stop() {
      running = false;
      clearTimeout(restartTimer);
      const stopping = thread;
      if (!stopping) return;
      await new Promise<void>((resolve) => {
        stopping.once("exit", () => resolve());
        // The thread answers once its deliveries in flight are done, its store is closed and its
        // last lines are sent (they come first: one port keeps the order).
        stopping.on("message", (message: FromThread) => {
          if (message === "stopped") void stopping.terminate();
        });
        post("stop");
      });
    },
  };
}

/** The thread's composition root: its store connection, the providers, the outbox worker. */
function runDeliveryThread(port: MessagePort, { config, secrets }: ThreadData): void {
  const clock: Clock = { nowMs: () => Date.now() };
  // The server writes this thread's lines (see createForwardingDestination); at the exit of a
  // thread dying of an error, what it logged in its last turn is sent still.
  const destination = createForwardingDestination((lines) =>
    port.postMessage({ log: lines } satisfies FromThread),
  );
  process.on("exit", () => destination.flush());
  const options = { level: config.logLevel, devCodes: config.mode === "dev" };
  const logger = createLogger(options, destination).child({ thread: "delivery" });
  const backend = openDeliveryBackend(config, logger);
  // The purge retries every second while the store is away: one line, a reminder a minute, "resumed".
  const purges = createOutageLog({ clock, log: logger, what: "purge" });
  const { purge } = backend;
  const purging = purge
    ? startPurgeLoop({
        purge: (nowMs) =>
          purge(nowMs).then((pass) => {
            purges.succeeded();
            return pass;
          }),
        clock,
        onError: (error) => purges.failed(error),
      })
    : null;
  const receipts = createReceiptRecorder({ outbox: backend.outbox, clock, logger });
  const codeSecrets = new CodeSecrets(secrets);
  const delivery = assembleDelivery({
    config,
    logger,
    clock,
    secrets: codeSecrets,
    apps: new AppDirectory(sealingAppStore(backend.apps, codeSecrets), clock, config.templates),
    outbox: backend.outbox,
    devInbox: backend.devInbox,
    receipts,
    codes: backend.codes,
  });
  // Counted here in plain integers; the server turns them into metrics when it is scraped.
  let sentChanges = -1;
  const sendMetrics = () => {
    const changes = delivery.tally.changes();
    if (changes === sentChanges) return;
    sentChanges = changes;
    port.postMessage({ metrics: delivery.tally.snapshot() } satisfies FromThread);
  };
  const metricsTimer = setInterval(sendMetrics, METRICS_INTERVAL_MS);
  metricsTimer.unref();
  // (a thread dying of an error sends what it counted last, as it sends its last lines)
  process.on("exit", sendMetrics);
  const stop = async () => {
    try {
      await delivery.stop();
      clearInterval(metricsTimer);
      sendMetrics();
      await purging?.stop();
      purges.close();
      receipts.close();
      await backend.close();
    } catch (error) {
      logger.error({ err: error }, "the delivery thread did not stop cleanly");
    } finally {
      logger.flush(() => port.postMessage("stopped" satisfies FromThread));
    }
  };
  port.on("message", (message: ToThread) => {
    if (message === "wake") delivery.wake();
    else if (message === "stop") void stop();
  });
  delivery.start();
  // the providers' circuits, all closed, before any try
  sendMetrics();
}

/** The thread's own connections: a second one to the SQLite file, or a small PostgreSQL pool. */
function openDeliveryBackend(config: Config, logger: RootLogger): DeliveryBackend {
  if (isClusterMode(config)) {
    return createClusterDeliveryBackend({
      databaseUrl: config.databaseUrl,
      redisUrl: config.redisUrl,
      redisPrefix: config.redisPrefix,
      poolSize: config.databasePoolSize,
      databaseSchema: config.databaseSchema,
      logger,
    });
  }
  return createSqliteDeliveryBackend({
    path: sqlitePath(config.dataDir),
    synchronous: config.sqliteSynchronous,
  });
}

/**
 * The error a dying thread's `error` event carries to the server, which gets a structured clone:
 * that of an Error subclass it does not know (better-sqlite3's SqliteError) keeps only its own
 * enumerable properties (`{code: "SQLITE_ERROR"}`, no message), that of an Error keeps them all.
 */
function crossingError(error: unknown): unknown {
  if (!(error instanceof Error) || Object.getPrototypeOf(error) === Error.prototype) return error;
  const crossing = new Error(error.message, { cause: error });
  crossing.name = error.name;
  if (error.stack) crossing.stack = error.stack;
  return Object.assign(crossing, error);
}

if (!isMainThread && parentPort && (workerData as Partial<ThreadData> | null)?.role === THREAD_ROLE) {
  // A rejection nobody handles kills the thread as a throw does; either way it dies with its message.
  process.on("unhandledRejection", (reason) => {
    throw crossingError(reason);
  });
  try {
    runDeliveryThread(parentPort, workerData as ThreadData);
  } catch (error) {
    throw crossingError(error);
  }
}
