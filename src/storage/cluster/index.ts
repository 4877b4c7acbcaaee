import type { Redis } from "ioredis";
import { answeredWithin } from "../../core/answered-within.js";
import type { Logger } from "../../core/ports.js";
import type { Backend, DeliveryBackend, PurgePass } from "../backend.js";
import { createPostgresAccountDirectory, settleEmailKeys } from "../postgres/postgres-account-directory.js";
import { createPostgresAppStore } from "../postgres/postgres-app-store.js";
import { createPostgresDevInbox } from "../postgres/postgres-dev-inbox.js";
import { migratePostgres, requireMigratedPostgres } from "../postgres/postgres-migrator.js";
import { createPostgresDeliveryList, createPostgresOutboxStore } from "../postgres/postgres-outbox-store.js";
import { createPostgresOutboxWriter } from "../postgres/postgres-outbox-writer.js";
import { createPostgresPool } from "../postgres/postgres-pool.js";
import { createPostgresPurger } from "../postgres/postgres-purger.js";
import { createPostgresSendLog } from "../postgres/postgres-send-log.js";
import { createRedisCaptchaStore } from "../redis/redis-captcha-store.js";
import { connectRedis, createRedisClient } from "../redis/redis-client.js";
import { createRedisCounterStore } from "../redis/redis-counter-store.js";
import { RedisKeys } from "../redis/redis-keys.js";
import { createRedisVerificationStore } from "../redis/redis-verification-store.js";
import { failClosed, unavailable } from "../store-unavailable.js";
import { createClusterVerificationStore } from "./cluster-verification-store.js";

export const DEFAULT_REDIS_PREFIX = "vd:";
export const DEFAULT_DATABASE_POOL_SIZE = 10;

export interface ClusterBackendOptions {
  redisUrl: string;
  databaseUrl: string;
  /** PostgreSQL connections per process */
  poolSize?: number;
  /** prefix of every Redis key (several deployments, or test runs, can share one Redis) */
  redisPrefix?: string;
  /** PostgreSQL schema to work in, created on migration; default: the server's search_path */
  databaseSchema?: string | undefined;
  /** apply pending PostgreSQL migrations before returning (default true) */
  migrate?: boolean;
  logger?: Logger;
}

/**
 * How a process's PostgreSQL connections (VERIFYD_DATABASE_POOL_SIZE) are shared: a quarter for
 * background work, split between the server's background pool (the send log, the purge, status
 * receipts, the dev inbox's reads) and the delivery thread's; the rest for requests.
 */
export function poolShares(poolSize: number): { request: number; background: number; delivery: number } {
  const quarter = Math.max(2, Math.floor(poolSize / 4));
  const delivery = Math.floor(quarter / 2);
  return { request: Math.max(1, poolSize - quarter), background: quarter - delivery, delivery };
}

/**
 * The delivery thread's own connections to the cluster's PostgreSQL (the outbox, the dev inbox,
 * the apps), committing without waiting for the WAL flush like the server's background pool.
 * Connects on first use; a backend failure surfaces as STORE_UNAVAILABLE, as in the server.
 */
export function createClusterDeliveryBackend(options: {
  databaseUrl: string;
  redisUrl: string;
  redisPrefix?: string | undefined;
  poolSize?: number;
  databaseSchema?: string | undefined;
  logger?: Logger;
}): DeliveryBackend {
  const logger = options.logger ?? silentLogger;
  const pool = createPostgresPool({
    url: options.databaseUrl,
    poolSize: poolShares(options.poolSize ?? DEFAULT_DATABASE_POOL_SIZE).delivery,
    schema: options.databaseSchema,
    asyncCommit: true,
    logger,
  });
  // Only to read the codes the messages carry; until it connects (and while Redis is away) the
  // reads fail and messages are sent as they would be without it.
  const redis = createRedisClient({ url: options.redisUrl, logger });
  redis.connect().catch(() => {});
  const codes = createRedisVerificationStore(
    redis,
    new RedisKeys(options.redisPrefix ?? DEFAULT_REDIS_PREFIX),
  );
  return {
    outbox: failClosed("postgres", createPostgresOutboxStore(pool)),
    devInbox: failClosed("postgres", createPostgresDevInbox(pool)),
    apps: failClosed("postgres", createPostgresAppStore(pool)),
    codes: { get: (appId, id) => codes.get(appId, id) },
    close: async () => {
      redis.disconnect();
      await pool.end();
    },
  };
}

/** The cluster backend; its purge and close are asynchronous. */
export interface ClusterBackend extends Backend {
  purge: (nowMs: number) => Promise<PurgePass>;
  close: () => Promise<void>;
}

const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };

// `/readyz` is unauthenticated, and each of its calls made three round trips (a Redis PING, a
// SELECT 1 on each pool): 50 callers at once cost PostgreSQL about two commits a call. Callers at
// once share one probe, and its answer serves for this long after it came. A failure is kept as
// long as a success: during an outage a probe is the costly kind (connects waiting out their
// timeouts against a store in trouble), which callers should not repeat back to back; and a
// store back a second later than it could be is nothing next to a load balancer's own interval
// and the failures in a row it waits for.
const READY_PROBE_KEEP_MS = 1_000;
// A probe's round trip that takes longer counts as a failure: on a connection that went silent
// (a stalled PostgreSQL) a ping waited out the driver's own timeouts, 2-6 s, and `/readyz` with it,
// where a load balancer wants a quick answer.
const READY_PING_TIMEOUT_MS = 1_000;

/** `probe`, shared by the callers while one runs, and its answer kept `keepMs` after it came. */
function shareProbe(probe: () => Promise<boolean>, keepMs: number): () => Promise<boolean> {
  let running: Promise<boolean> | null = null;
  let kept: { ready: boolean; untilMs: number } | null = null;
  return () => {
    // Monotonic: a wall clock stepped back would keep an answer until it caught up.
    if (kept && performance.now() < kept.untilMs) return Promise.resolve(kept.ready);
    running ??= probe()
      .catch(() => false)
      .then((ready) => {
        kept = { ready, untilMs: performance.now() + keepMs };
        running = null;
        return ready;
      });
    return running;
  };
}

/**
 * A backend the start could not use, named by the setting that points at it (never by its URL,
 * which carries a password): "Connection is closed." alone did not say which of the two it was.
 */
export class BackendUnusable extends Error {
  constructor(setting: string, backend: string, cause: unknown) {
    super(`${setting}: cannot use ${backend}: ${cause instanceof Error ? cause.message : String(cause)}`, {
      cause,
    });
    this.name = "BackendUnusable";
  }
}

/**
 * What a start (or `verifyd migrate`) throws for a failure to reach or migrate PostgreSQL: a
 * driver's or the server's error (a code: ECONNREFUSED, 28P01, ...) says nothing of where it came
 * from, so it is named by its setting; the schema's own refusals name what to do already.
 */
export function postgresUnusable(error: unknown): unknown {
  if (typeof (error as { code?: unknown }).code !== "string") return error;
  return new BackendUnusable("VERIFYD_DATABASE_URL (databaseUrl)", "PostgreSQL", error);
}

/**
 * Every port of the cluster mode: hot state (codes, counters, tokens, idempotency, captcha) in
 * Redis, durable state (apps, accounts, sessions, outbox, deliveries, dev inbox, send log) in
 * PostgreSQL. Any backend failure surfaces as OtpError STORE_UNAVAILABLE (wrapped here, once);
 * the clients reconnect by themselves. Migrates PostgreSQL first unless told not to, and
 * rejects (BackendUnusable) if either backend is unusable at startup.
 */
export async function createClusterBackend(options: ClusterBackendOptions): Promise<ClusterBackend> {
  const logger = options.logger ?? silentLogger;
  const poolSize = options.poolSize ?? DEFAULT_DATABASE_POOL_SIZE;
  // Two pools share the configured size (three with the delivery thread's, see poolShares). The
  // request path's (sends' outbox rows, apps, accounts, reads) commits synchronously: a 2xx means
  // durable. The background pool (the outbox worker's claims and settlements, the dev inbox, the
  // send log, the purge) commits without waiting for the WAL flush: losing its last few hundred ms
  // in a database crash only means a message is claimed or delivered again (at least once, as a
  // worker crash already allows), and it keeps the worker's commits from queueing fsyncs in front
  // of the sends'.
  const { request: requestSize, background: backgroundSize } = poolShares(poolSize);
  const pool = createPostgresPool({
    url: options.databaseUrl,
    poolSize: requestSize,
    schema: options.databaseSchema,
    logger,
  });
  const backgroundPool = createPostgresPool({
    url: options.databaseUrl,
    poolSize: backgroundSize,
    schema: options.databaseSchema,
    asyncCommit: true,
    logger,
  });
  let redis: Redis;
  try {
    try {
      if (options.migrate ?? true) {
        const applied = await migratePostgres(pool, options.databaseSchema, { logger });
        if (applied.length > 0) logger.info({ applied }, "postgres migrated");
      } else {
        await requireMigratedPostgres(pool);
      }
      // At every start, migrated here or not: older processes may have written accounts since
      // the migration that keys them ran, and may still be (a rolling deploy).
      const emailKeys = await settleEmailKeys(pool);
      if (emailKeys.keyed > 0 || emailKeys.released > 0)
        logger.info(emailKeys, "accounts an older process wrote are keyed to their mailbox");
    } catch (error) {
      throw postgresUnusable(error);
    }
    try {
      redis = await connectRedis({ url: options.redisUrl, logger });
    } catch (error) {
      throw new BackendUnusable("VERIFYD_REDIS_URL (redisUrl)", "Redis", error);
    }
  } catch (error) {
    await Promise.all([pool.end().catch(() => {}), backgroundPool.end().catch(() => {})]);
    throw error;
  }

  const keys = new RedisKeys(options.redisPrefix ?? DEFAULT_REDIS_PREFIX);
  const outbox = createPostgresOutboxStore(backgroundPool);
  // Half the request pool may be committing outbox batches; the rest serves reads and accounts.
  const writer = createPostgresOutboxWriter(pool, {
    maxConcurrentCommits: Math.max(1, Math.floor(requestSize / 2)),
  });
  const sendLog = createPostgresSendLog(backgroundPool, logger);
  const purge = createPostgresPurger(backgroundPool);
  const verifications = createClusterVerificationStore({
    hot: createRedisVerificationStore(redis, keys),
    outbox: writer,
    deliveries: createPostgresDeliveryList(pool),
    logger,
  });

  return {
    verifications: failClosed("cluster", verifications),
    outbox: failClosed("postgres", outbox),
    apps: failClosed("postgres", createPostgresAppStore(pool)),
    accounts: failClosed("postgres", createPostgresAccountDirectory(pool)),
    counters: failClosed("redis", createRedisCounterStore(redis, keys)),
    devInbox: failClosed("postgres", createPostgresDevInbox(backgroundPool)),
    captcha: failClosed("redis", createRedisCaptchaStore(redis, keys)),
    sendLog: failClosed("postgres", sendLog),
    purge: (nowMs) =>
      purge(nowMs).catch((error: unknown) => {
        throw unavailable("postgres", error);
      }),
    ready: shareProbe(async () => {
      const pings = await Promise.allSettled(
        [redis.ping(), pool.query("SELECT 1"), backgroundPool.query("SELECT 1")].map((ping) =>
          answeredWithin<unknown>(ping, READY_PING_TIMEOUT_MS),
        ),
      );
      return pings.every((ping) => ping.status === "fulfilled");
    }, READY_PROBE_KEEP_MS),
    async close() {
      // Rows already handed to the writer are committed (or failed) before the pool goes.
      await writer.drain();
      await sendLog.close();
      await redis.quit().catch(() => redis.disconnect());
      await Promise.all([pool.end(), backgroundPool.end()]);
    },
  };
}
