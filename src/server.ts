import { randomBytes } from "node:crypto";
import { existsSync, linkSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { FastifyInstance } from "fastify";
import { createCaptchaGenerator } from "./captcha/captcha-generator.js";
import { externalVerifiersByApp } from "./captcha/external/external-verifier-registry.js";
import { type CaptchaRenderThread, startCaptchaRenderThread } from "./captcha/render-thread.js";
import { settleAppSecrets } from "./config/app-secrets.js";
import { syncConfiguredApps } from "./config/apps-sync.js";
import { type Config, ConfigError, isClusterMode } from "./config/load.js";
import { isLoopbackHost } from "./config/loopback-host.js";
import { createCaptchaService } from "./core/abuse/captcha-service.js";
import { createPumpingWatch } from "./core/abuse/pumping-watch.js";
import { AppDirectory, captchaGap, DEFAULT_APP_ID, normalizeApp } from "./core/apps/apps.js";
import { sealingAppStore } from "./core/apps/sealed-app-store.js";
import { createReceiptRecorder } from "./core/delivery/delivery-receipts.js";
import type { OutboxWorker } from "./core/delivery/outbox-worker.js";
import { createEngine, type Engine } from "./core/engine.js";
import type { Clock, MessageSender } from "./core/ports.js";
import { CodeSecrets } from "./core/secrets.js";
import type { Channel } from "./core/types.js";
import { assembleDelivery, type Delivery } from "./delivery-root.js";
import { startDeliveryThread } from "./delivery-thread.js";
import { buildHttpApp } from "./http/app.js";
import { createOutageLog } from "./observability/log-throttle.js";
import type { RootLogger } from "./observability/logger.js";
import {
  countingApprovals,
  countingSendLog,
  createMetrics,
  createServerCounts,
} from "./observability/metrics.js";
import type { Backend } from "./storage/backend.js";
import { createClusterBackend, postgresUnusable } from "./storage/cluster/index.js";
import { sharedDevSecret } from "./storage/postgres/postgres-dev-secret.js";
import { startPurgeLoop } from "./storage/purge-loop.js";
import { lockDataDir } from "./storage/sqlite/data-dir-lock.js";
import { createSqliteBackend, sqlitePath } from "./storage/sqlite/index.js";
import { createPrivateDir, openToOthers } from "./storage/sqlite/private-files.js";

const systemClock: Clock = { nowMs: () => Date.now() };

export interface RunningServer {
  fastify: FastifyInstance;
  engine: Engine;
  delivery: Delivery;
  /** the outbox worker, for tests to drive; null when delivery runs in its own thread */
  worker: OutboxWorker | null;
  backend: Backend;
  /**
   * starts delivery and the purger, and the store's maintenance: `onStoreGone` once the store's
   * files are gone from under it for good (the caller stops the server)
   */
  startBackground(options?: { onStoreGone?: () => void }): void;
  /** drains requests, then the outbox round in flight, then closes the store */
  close(): Promise<void>;
}

// As VERIFYD_SECRET's own floor (config/load.ts): a generated secret is 43 characters.
const MIN_DEV_SECRET_LENGTH = 16;

/**
 * Resolves the HMAC secrets: configured ones, or in dev mode one generated and kept in the data dir
 * (embedded mode) or in PostgreSQL (cluster mode: every process, each with a data dir of its own,
 * must have the same one). In cluster mode the schema must be migrated first: `openStore` resolves
 * them once the backend is open.
 */
export async function resolveSecrets(config: Config, logger?: RootLogger): Promise<string[]> {
  if (config.secrets.length > 0) return config.secrets;
  const file = join(config.dataDir, "dev-secret");
  if (!isClusterMode(config)) {
    if (!existsSync(file)) writeDevSecretFile(config.dataDir, file);
    logger?.warn(
      { file },
      "dev mode: using a generated secret kept in the data dir; set VERIFYD_SECRET in production",
    );
    return [readDevSecretFile(file)];
  }
  // An earlier version kept one per process in its data dir: the first process to start offers
  // its own, and each keeps its own after the shared one, so that what it sealed still opens and
  // the codes it issued still check (a server's start seals the app settings anew under the first).
  const own = existsSync(file) ? readDevSecretFile(file) : undefined;
  const shared = await sharedDevSecret(
    { url: config.databaseUrl, schema: config.databaseSchema },
    own ?? newDevSecret(),
    Date.now(),
  ).catch((error: unknown) => {
    throw postgresUnusable(error);
  });
  logger?.warn(
    { table: "dev_secret" },
    "dev mode: using a generated secret kept in PostgreSQL, the same for every process of the cluster; set VERIFYD_SECRET in production",
  );
  return own === undefined || own === shared ? [shared] : [shared, own];
}

const newDevSecret = (): string => randomBytes(32).toString("base64url");

function writeDevSecretFile(dataDir: string, file: string): void {
  createPrivateDir(dataDir);
  // Written whole under a name of its own, then linked in place: two processes starting on a new
  // data dir at once must not each write their own, nor one read the other's half-written file.
  const draft = `${file}.${process.pid}.new`;
  writeFileSync(draft, newDevSecret(), { mode: 0o600 });
  try {
    linkSync(draft, file);
  } catch (error) {
    if ((error as { code?: unknown }).code !== "EEXIST") throw error;
  } finally {
    rmSync(draft, { force: true });
  }
}

function readDevSecretFile(file: string): string {
  let secret: string;
  try {
    secret = readFileSync(file, "utf8").trim();
  } catch (error) {
    throw new ConfigError([`VERIFYD_DATA_DIR (dataDir): cannot read ${file} (${errorCode(error)})`]);
  }
  // A file cut short (a full disk) or edited by hand would make every code and seal guessable.
  if (secret.length < MIN_DEV_SECRET_LENGTH)
    throw new ConfigError([
      `VERIFYD_DATA_DIR (dataDir): ${file} holds ${secret.length} characters, fewer than ${MIN_DEV_SECRET_LENGTH}; delete it to have a new one generated (codes and sealed settings made under it are then lost), or set VERIFYD_SECRET`,
    ]);
  return secret;
}

const errorCode = (error: unknown): string =>
  String((error as { code?: unknown }).code ?? (error as Error).message);

/**
 * Opens the store the configuration selects, resolves the secrets (`resolveSecrets`: in cluster
 * dev mode the store keeps them) and applies the configured apps, their secrets sealed under those
 * (see `settleAppSecrets`). Only a server (`serving`) takes off the keys its file no longer gives,
 * or seals anew: the CLI's `apps` commands, run from a shell that may not have the service's
 * VERIFYD_CONFIG, only add.
 */
export async function openStore(
  config: Config,
  clock: Clock = systemClock,
  logger?: RootLogger,
  { serving = true }: { serving?: boolean } = {},
): Promise<{
  backend: Backend;
  apps: AppDirectory;
  secrets: CodeSecrets;
  /** the secrets as resolved, for the delivery thread (a CodeSecrets cannot cross to it) */
  resolvedSecrets: string[];
}> {
  const backend: Backend = isClusterMode(config)
    ? await createClusterBackend({
        redisUrl: config.redisUrl,
        databaseUrl: config.databaseUrl,
        poolSize: config.databasePoolSize,
        redisPrefix: config.redisPrefix,
        databaseSchema: config.databaseSchema,
        migrate: config.migrateOnStart,
        ...(logger ? { logger } : {}),
      })
    : // The CLI's commands open only a store a server (or `verifyd migrate`) made: run from another
      // dir without VERIFYD_DATA_DIR they must not make a new, empty one and report success.
      openSqlite(config, clock, logger, { mustExist: !serving });
  try {
    const resolvedSecrets = await resolveSecrets(config, logger);
    const secrets = new CodeSecrets(resolvedSecrets);
    const sealed = sealingAppStore(backend.apps, secrets, (appId, paths) =>
      logger?.error(
        { appId, settings: paths },
        "an app's secret settings do not open under VERIFYD_SECRET (another process sealed them under a secret this one lacks); they fail closed until this process has that secret",
      ),
    );
    const apps = new AppDirectory(sealed, clock, config.templates);
    await settleAppSecrets({ raw: backend.apps, sealing: sealed }, secrets, config.apps, { serving });
    await syncConfiguredApps(apps, config.apps, { dropKeysLeftOut: serving });
    return { backend, apps, secrets, resolvedSecrets };
  } catch (error) {
    await backend.close();
    throw error;
  }
}

function openSqlite(
  config: Config,
  clock: Clock,
  logger: RootLogger | undefined,
  { mustExist }: { mustExist: boolean },
): Backend {
  const path = sqlitePath(config.dataDir);
  const open = openToOthers([config.dataDir, path]);
  if (open.length > 0)
    logger?.warn(
      { files: open },
      "the data dir holds addresses (and, in dev mode, codes) other local users may read: chmod 700 the dir and 600 its files",
    );
  return createSqliteBackend({
    path,
    clock,
    synchronous: config.sqliteSynchronous,
    mustExist,
    ...(logger ? { logger } : {}),
  });
}

export interface AssembleOptions {
  config: Config;
  logger: RootLogger;
  /** tests pass a fixed clock */
  clock?: Clock;
  /** providers per channel; default: the dev sender in dev mode, none otherwise */
  senders?: Partial<Record<Channel, MessageSender[]>>;
  /** deliver from a worker thread (`senders` must then be unset: they cannot cross to it) */
  deliveryThread?: boolean;
  /** render captcha challenges on a worker thread (started at the first draw), not the calling one */
  captchaThread?: boolean;
  /** how long `close` lets requests in flight finish before closing their sockets (DRAIN_MS) */
  drainMs?: number;
  /**
   * share the data dir with a server of this process that holds it (tests that restart a server
   * over a dir while the first is open; the two then each believe they are its only writer)
   */
  shareDataDir?: boolean;
}

// Long enough for any request that is being answered; a shorter wait would cut off replies.
const DRAIN_MS = 10_000;

/**
 * Builds every part without listening: adapters -> engine -> delivery -> HTTP app. Tests use it as
 * is, with the outbox worker on the calling thread.
 */
export async function assembleServer(options: AssembleOptions): Promise<RunningServer> {
  const { config, logger } = options;
  if (options.deliveryThread && options.senders)
    throw new Error("senders given in process cannot be used by the delivery thread");
  const clock = options.clock ?? systemClock;
  const devMode = config.mode === "dev";
  // One server per data dir (see lockDataDir); the cluster's processes share their backends.
  const dataDirLock = isClusterMode(config)
    ? null
    : lockDataDir(config.dataDir, { share: options.shareDataDir ?? false });
  const { backend, apps, secrets, resolvedSecrets } = await openStore(config, clock, logger).catch(
    (error: unknown) => {
      dataDirLock?.release();
      throw error;
    },
  );
  if (dataDirLock?.sole) {
    try {
      const released = backend.releaseDeadClaims?.(clock.nowMs()) ?? 0;
      if (released > 0)
        logger.info({ messages: released }, "messages an earlier server had claimed are due again");
    } catch (error) {
      // (a CLI command holding the write lock past the busy timeout) they wait out their lease
      logger.warn({ err: error }, "could not make an earlier server's claimed messages due again");
    }
  }
  // Whatever fails from here on gives the store and the data dir back, so that this process can
  // start a server on them again (a test, or a start retried after a busy port).
  // (what is made before a failure is stopped with it: providers connect as they are made)
  let made: {
    receipts?: { close(): void };
    delivery?: Delivery;
    renderThread?: CaptchaRenderThread | null;
  } = {};
  try {
    // Receipts (status callbacks here, SMPP deliver_sm where the providers run) update the outbox's
    // delivery records.
    const receipts = createReceiptRecorder({ outbox: backend.outbox, clock, logger });
    made = { receipts };
    const inProcess = options.deliveryThread
      ? null
      : assembleDelivery({
          config,
          logger,
          clock,
          secrets,
          apps,
          outbox: backend.outbox,
          devInbox: backend.devInbox,
          receipts,
          codes: backend.verifications,
          ...(options.senders ? { senders: options.senders } : {}),
        });
    const delivery: Delivery = inProcess ?? startDeliveryThread({ config, secrets: resolvedSecrets, logger });
    made = { receipts, delivery };
    const { providers } = delivery;
    for (const channel of ["email", "sms"] as const) {
      if (!providers.channelEnabled(channel))
        logger.warn({ channel }, "no provider configured: this channel is disabled");
    }
    if (!devMode) {
      for (const app of await apps.list()) {
        // The vendor faces take no key, as their vendors' client APIs do not: an enabled `default`
        // app is open to anyone who can reach them, which a production operator may not know.
        const keyless = normalizeApp(app).faces.filter((face) => face !== "native");
        if (app.id === DEFAULT_APP_ID && !app.disabled && keyless.length > 0) {
          logger.warn(
            { appId: app.id, faces: keyless },
            'the `default` app serves these faces without a key, so anyone who reaches them can send codes through it: unless its clients use it, disable it with {"id": "default", "disabled": true} in the config file\'s `apps`',
          );
        }
        const gap = captchaGap(normalizeApp(app));
        if (gap) {
          logger.warn(
            { appId: app.id, ...gap },
            "the app's captcha is weaker on one face that serves it than on another, so a script sends through the weaker: list the faces its clients use in the app's `faces`, or make their `abuse.captcha` modes agree",
          );
        }
      }
    }

    const renderThread = options.captchaThread ? startCaptchaRenderThread({ log: logger, clock }) : null;
    made = { ...made, renderThread };
    const captcha = createCaptchaService({
      store: backend.captcha,
      generator: renderThread?.generator ?? createCaptchaGenerator(),
      secrets,
      clock,
      devMode,
      counters: backend.counters,
      externalVerifierFor: externalVerifiersByApp(),
      onVendorTrouble: (appId, vendor, reason) =>
        logger.warn(
          { appId, vendor, reason },
          "the app's captcha vendor refused a token for a reason of its own (an outage or the app's settings); such refusals are told at most once a minute",
        ),
    });
    // Counted as the core reports its decisions and the store approves codes (an increment each).
    const counts = createServerCounts();
    const engine = createEngine({
      store: countingApprovals(backend.verifications, counts.approvals),
      counters: backend.counters,
      apps,
      accounts: backend.accounts,
      secrets,
      clock,
      logger,
      defaultCountry: config.defaultCountry,
      channelEnabled: providers.channelEnabled,
      onQueued: () => delivery.wake(),
      captcha,
      sendLog: countingSendLog(backend.sendLog, counts.sends),
      watchPrefix: createPumpingWatch({ counters: backend.counters, clock, logger }),
    });
    const metrics = createMetrics({
      counts,
      deliveries: () => delivery.deliveryMetrics(),
      queued: () => backend.outbox.queuedCount(),
      clock,
      log: logger,
    });
    const fastify = await buildHttpApp({
      engine,
      logger,
      devMode,
      devInbox: backend.devInbox,
      defaultCountry: config.defaultCountry,
      trustProxy: config.trustProxy,
      disposableEmailDomains: config.disposableEmailDomains,
      // Sends are durable while delivery is down, but nothing goes out: say so to the operator.
      ready: async () => delivery.healthy() && (await backend.ready()),
      storeFault: backend.storeFault,
      onStoreAnswered: backend.onAnswered,
      callbacks: { handlers: providers.callbacks, recorder: receipts, clock },
      metrics: {
        metrics,
        refusals: counts.refusals,
        token: config.metricsToken,
      },
    });

    let purging: { stop(): Promise<void> } | null = null;
    // A loop retries on its own while the store is away: its lines are throttled, not one a round.
    const checkpoints = createOutageLog({ clock, log: logger, what: "background checkpoint" });
    const purges = createOutageLog({ clock, log: logger, what: "purge" });
    return {
      fastify,
      engine,
      delivery,
      worker: inProcess?.worker ?? null,
      backend,
      startBackground({ onStoreGone } = {}) {
        delivery.start();
        backend.startMaintenance?.(checkpoints, onStoreGone);
        if (!delivery.purges) {
          purging = startPurgeLoop({
            purge: (nowMs) =>
              backend.purge(nowMs).then((pass) => {
                purges.succeeded();
                return pass;
              }),
            clock,
            onError: (error) => purges.failed(error),
          });
        }
      },
      async close() {
        await purging?.stop();
        // Requests in flight get this long to finish; then their sockets are closed. Node stops
        // timing requests out once the server closes, so a client that stalled its body would
        // otherwise hold the shutdown for ever.
        const cutOff = setTimeout(() => fastify.server.closeAllConnections(), options.drainMs ?? DRAIN_MS);
        await fastify.close().finally(() => clearTimeout(cutOff));
        await renderThread?.close();
        await delivery.stop();
        receipts.close();
        await backend.close();
        purges.close();
        checkpoints.close();
        metrics.close();
        dataDirLock?.release();
      },
    };
  } catch (error) {
    await made.delivery?.stop().catch(() => {});
    await made.renderThread?.close();
    made.receipts?.close();
    await backend.close().catch(() => {});
    dataDirLock?.release();
    throw error;
  }
}

/**
 * The composition root's body: assemble (captchas rendered on a thread of their own,
 * captcha/render-thread.ts), listen, start delivery (in a thread of its own, delivery-thread.ts)
 * and the purger.
 */
export async function startServer(
  config: Config,
  logger: RootLogger,
  options: { onStoreGone?: () => void } = {},
): Promise<RunningServer> {
  const server = await assembleServer({ config, logger, deliveryThread: true, captchaThread: true });
  try {
    await server.fastify.listen({ host: config.host, port: config.port });
  } catch (error) {
    await server.close().catch(() => {});
    throw listenRefusal(error, config) ?? error;
  }
  server.startBackground(options);
  if (config.mode === "dev" && !isLoopbackHost(config.host)) {
    logger.warn(
      { host: config.host },
      "dev mode is listening beyond loopback: anyone who can reach it can read codes",
    );
  }
  return server;
}

/**
 * A listen the address or port of the configuration made impossible, named like every other
 * configuration error (an unknown host gave a bare "getaddrinfo ENOTFOUND").
 */
function listenRefusal(error: unknown, config: Config): ConfigError | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  if (code === "ENOTFOUND" || code === "EAI_AGAIN" || code === "EADDRNOTAVAIL") {
    return new ConfigError([`VERIFYD_HOST (host): cannot listen on "${config.host}" (${code})`]);
  }
  if (code === "EADDRINUSE" || code === "EACCES") {
    return new ConfigError([`VERIFYD_PORT (port): cannot listen on port ${config.port} (${code})`]);
  }
  return undefined;
}
