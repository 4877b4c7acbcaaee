import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { FastifyInstance } from "fastify";
import { createCaptchaGenerator } from "./captcha/captcha-generator.js";
import { syncConfiguredApps } from "./config/apps-sync.js";
import type { Config } from "./config/load.js";
import { createCaptchaService } from "./core/abuse/captcha-service.js";
import { createPumpingWatch } from "./core/abuse/pumping-watch.js";
import { AppDirectory } from "./core/apps/apps.js";
import { createOutboxWorker, type OutboxWorker } from "./core/delivery/outbox-worker.js";
import { createEngine, type Engine } from "./core/engine.js";
import type { Clock, MessageSender } from "./core/ports.js";
import { CodeSecrets } from "./core/secrets.js";
import type { Channel } from "./core/types.js";
import { createDevSender } from "./delivery/dev/dev-sender.js";
import { buildHttpApp } from "./http/app.js";
import type { RootLogger } from "./observability/logger.js";
import { createSqliteBackend, type SqliteBackend, sqlitePath } from "./storage/sqlite/index.js";

const systemClock: Clock = { nowMs: () => Date.now() };
// Purging often in small batches keeps each pause short; a minute keeps the file bounded.
const PURGE_INTERVAL_MS = 60_000;

export interface RunningServer {
  fastify: FastifyInstance;
  engine: Engine;
  worker: OutboxWorker;
  backend: SqliteBackend;
  /** starts the outbox worker and the purger */
  startBackground(): void;
  /** drains requests, then the outbox round in flight, then closes the store */
  close(): Promise<void>;
}

/** Resolves the HMAC secrets: configured ones, or in dev mode one generated and kept in the data dir. */
export function resolveSecrets(config: Config, logger: RootLogger): string[] {
  if (config.secrets.length > 0) return config.secrets;
  const file = join(config.dataDir, "dev-secret");
  if (!existsSync(file)) {
    mkdirSync(config.dataDir, { recursive: true });
    writeFileSync(file, randomBytes(32).toString("base64url"), { mode: 0o600 });
  }
  logger.warn(
    { file },
    "dev mode: using a generated secret kept in the data dir; set VERIFYD_SECRET in production",
  );
  return [readFileSync(file, "utf8").trim()];
}

/** Opens the store the configuration selects and applies the configured apps. */
export async function openStore(
  config: Config,
  clock: Clock = systemClock,
  logger?: RootLogger,
): Promise<{ backend: SqliteBackend; apps: AppDirectory }> {
  if (config.redisUrl || config.databaseUrl) {
    throw new Error(
      "cluster mode (VERIFYD_REDIS_URL + VERIFYD_DATABASE_URL) is not available in this build yet",
    );
  }
  const backend = createSqliteBackend({
    path: sqlitePath(config.dataDir),
    synchronous: config.sqliteSynchronous,
  });
  const apps = new AppDirectory(backend.apps, clock);
  await syncConfiguredApps(apps, config.apps, config.templates);
  return { backend, apps };
}

export interface AssembleOptions {
  config: Config;
  logger: RootLogger;
  /** tests pass a fixed clock */
  clock?: Clock;
  /** providers per channel; default: the dev sender in dev mode, none otherwise */
  senders?: Partial<Record<Channel, MessageSender[]>>;
}

/** Builds every part without listening: adapters -> engine -> worker -> HTTP app. Tests use it as is. */
export async function assembleServer(options: AssembleOptions): Promise<RunningServer> {
  const { config, logger } = options;
  const clock = options.clock ?? systemClock;
  const devMode = config.mode === "dev";
  const secrets = new CodeSecrets(resolveSecrets(config, logger));
  const { backend, apps } = await openStore(config, clock, logger);

  const senders = new Map<Channel, MessageSender[]>();
  for (const channel of ["email", "sms"] as const) {
    const configured = options.senders?.[channel];
    if (configured) senders.set(channel, configured);
    else if (devMode)
      senders.set(channel, [createDevSender({ channel, inbox: backend.devInbox, logger, logCodes: true })]);
    if (!senders.get(channel)?.length)
      logger.warn({ channel }, "no provider configured: this channel is disabled");
  }

  const worker = createOutboxWorker({
    outbox: backend.outbox,
    apps,
    secrets,
    clock,
    logger,
    route: (message) => senders.get(message.channel) ?? [],
  });
  const captcha = createCaptchaService({
    store: backend.captcha,
    generator: createCaptchaGenerator(),
    secrets,
    clock,
    devMode,
  });
  const engine = createEngine({
    store: backend.verifications,
    counters: backend.counters,
    apps,
    accounts: backend.accounts,
    secrets,
    clock,
    logger,
    defaultCountry: config.defaultCountry,
    channelEnabled: (channel) => (senders.get(channel)?.length ?? 0) > 0,
    onQueued: () => worker.wake(),
    captcha,
    sendLog: backend.sendLog,
    watchPrefix: createPumpingWatch({ counters: backend.counters, clock, logger }),
  });
  const fastify = await buildHttpApp({
    engine,
    logger,
    devMode,
    devInbox: backend.devInbox,
    defaultCountry: config.defaultCountry,
    trustProxy: config.trustProxy,
    ready: backend.ready,
  });

  let purgeTimer: NodeJS.Timeout | null = null;
  return {
    fastify,
    engine,
    worker,
    backend,
    startBackground() {
      worker.start();
      purgeTimer = setInterval(() => {
        try {
          backend.purge(clock.nowMs());
        } catch (error) {
          logger.error({ err: error }, "purge failed");
        }
      }, PURGE_INTERVAL_MS);
      purgeTimer.unref();
    },
    async close() {
      if (purgeTimer) clearInterval(purgeTimer);
      await fastify.close();
      await worker.stop();
      for (const list of senders.values()) for (const sender of list) await sender.close?.();
      backend.close();
    },
  };
}

/** The composition root's body: assemble, listen, start the outbox worker and the purger. */
export async function startServer(config: Config, logger: RootLogger): Promise<RunningServer> {
  const server = await assembleServer({ config, logger });
  await server.fastify.listen({ host: config.host, port: config.port });
  server.startBackground();
  if (config.mode === "dev" && !isLoopback(config.host)) {
    logger.warn(
      { host: config.host },
      "dev mode is listening beyond loopback: anyone who can reach it can read codes",
    );
  }
  return server;
}

function isLoopback(host: string): boolean {
  return host === "127.0.0.1" || host === "::1" || host === "localhost";
}
