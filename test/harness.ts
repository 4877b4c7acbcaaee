import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { FastifyInstance } from "fastify";
import { Redis } from "ioredis";
import pg from "pg";
import { loadConfig } from "../src/config/load.js";
import type { AppConfig } from "../src/config/schema.js";
import type { OutboxWorker } from "../src/core/delivery/outbox-worker.js";
import type { Engine } from "../src/core/engine.js";
import type { MessageSender } from "../src/core/ports.js";
import type { Channel } from "../src/core/types.js";
import { createLogger } from "../src/observability/logger.js";
import { assembleServer, type RunningServer } from "../src/server.js";
import type { ClusterBackend } from "../src/storage/cluster/index.js";
import { type SqliteBackend, sqliteBackendOf } from "../src/storage/sqlite/index.js";
import {
  backendMissing,
  deleteRedisPrefix,
  dropSchema,
  missingReason,
  probePostgres,
  probeRedis,
  uniqueName,
} from "./cluster/backends.js";
import { FixedClock } from "./fakes/fixed-clock.js";
import { RecordingSender } from "./fakes/recording-sender.js";

export interface TestServerOptions {
  /** extra VERIFYD_* variables (mode, secret, trust proxy, ...) */
  env?: Record<string, string>;
  /** apps written to a config file (VERIFYD_CONFIG) */
  apps?: AppConfig[];
  /** other config-file keys (templates, ...) */
  configFile?: Record<string, unknown>;
  /** reuse a data dir (restart tests); a fresh temp dir otherwise */
  dataDir?: string;
  /** use the real dev sender (dev inbox) instead of recording senders */
  devSender?: boolean;
  /** how long closing lets requests in flight finish (AssembleOptions.drainMs) */
  drainMs?: number;
  /** open `dataDir` while another server of this process has it open (AssembleOptions.shareDataDir) */
  shareDataDir?: boolean;
  clock?: FixedClock;
  /** providers per channel instead of the recording senders (an empty list disables a channel) */
  senders?: Partial<Record<Channel, MessageSender[]>>;
}

/** The Redis and PostgreSQL a cluster-mode test server keeps its state in. */
export interface ClusterBackends {
  redisUrl: string;
  databaseUrl: string;
}

/**
 * The modes a suite that must answer alike in both runs in: embedded always, and cluster when
 * Redis and PostgreSQL are reachable (else the cluster half is reported skipped, naming why).
 */
export async function modesToTest(
  suite: string,
): Promise<Array<{ mode: string; cluster?: ClusterBackends }>> {
  const [redis, postgres] = await Promise.all([probeRedis(), probePostgres()]);
  if (!redis.ok || !postgres.ok) {
    backendMissing(`${suite} (cluster)`, missingReason(redis, postgres));
    return [{ mode: "embedded" }];
  }
  return [
    { mode: "embedded" },
    { mode: "cluster", cluster: { redisUrl: redis.url, databaseUrl: postgres.url } },
  ];
}

/** What a test server offers whichever mode it runs. */
interface TestServerBase {
  fastify: FastifyInstance;
  engine: Engine;
  clock: FixedClock;
  email: RecordingSender;
  sms: RecordingSender;
  dataDir: string;
  /** runs outbox rounds until nothing is due */
  deliverAll(): Promise<void>;
  close(): Promise<void>;
}

export interface TestServer extends TestServerBase {
  /**
   * without `cluster` the harness runs the embedded mode, so its backend is SQLite's (tests may read
   * the file), with the outbox worker on the test's thread so that tests drive it
   */
  server: RunningServer & { backend: SqliteBackend; worker: OutboxWorker };
}

export interface ClusterTestServer extends TestServerBase {
  /** the cluster mode's backend, with the outbox worker on the test's thread as in the embedded mode */
  server: RunningServer & { backend: ClusterBackend; worker: OutboxWorker };
  /**
   * Clients of this server's own PostgreSQL schema (the connection's search_path) and Redis key
   * prefix, for tests to read what it stored; both are dropped on close.
   */
  stores: { postgres: pg.Client; redis: Redis; redisPrefix: string; schema: string };
}

/**
 * A whole verifyd (real config loading, real engine and HTTP app) with a fixed clock and recording
 * senders; requests go through `fastify.inject`, no sockets. It runs the embedded mode on a real
 * SQLite file, or with `cluster` the cluster mode on that Redis and PostgreSQL, in a schema and key
 * prefix of its own.
 */
export function createTestServer(
  options: TestServerOptions & { cluster: ClusterBackends },
): Promise<ClusterTestServer>;
export function createTestServer(options?: TestServerOptions): Promise<TestServer>;
export async function createTestServer(
  options: TestServerOptions & { cluster?: ClusterBackends } = {},
): Promise<TestServer | ClusterTestServer> {
  if (options.cluster) return createClusterTestServer(options, options.cluster);
  const { base, server } = await startServer(options, {});
  return { ...base, server: Object.assign(server, { backend: sqliteBackendOf(server.backend) }) };
}

async function createClusterTestServer(
  options: TestServerOptions,
  cluster: ClusterBackends,
): Promise<ClusterTestServer> {
  // Unique per server, so parallel test files (and the two servers of one test) never share state.
  const schema = uniqueName("harness");
  const redisPrefix = `${uniqueName("harness")}:`;
  const postgres = new pg.Client({
    connectionString: cluster.databaseUrl,
    options: `-c search_path=${schema}`,
  });
  postgres.on("error", () => {});
  const redis = new Redis(cluster.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
  redis.on("error", () => {});
  const release = async () => {
    await Promise.all([postgres.end().catch(() => {}), redis.quit().catch(() => redis.disconnect())]);
    await Promise.all([
      dropSchema(cluster.databaseUrl, schema),
      deleteRedisPrefix(cluster.redisUrl, redisPrefix),
    ]);
  };
  const { base, server } = await Promise.all([postgres.connect(), redis.connect()])
    .then(() =>
      startServer(options, {
        VERIFYD_REDIS_URL: cluster.redisUrl,
        VERIFYD_DATABASE_URL: cluster.databaseUrl,
        VERIFYD_DATABASE_SCHEMA: schema,
        VERIFYD_REDIS_PREFIX: redisPrefix,
      }),
    )
    .catch(async (error: unknown) => {
      await release();
      throw error;
    });
  return {
    ...base,
    // Both URLs set make `openStore` build the cluster backend.
    server: Object.assign(server, { backend: server.backend as ClusterBackend }),
    stores: { postgres, redis, redisPrefix, schema },
    async close() {
      await base.close();
      await release();
    },
  };
}

/** Assembles the server of either mode; `backendEnv` selects the mode's stores. */
async function startServer(
  options: TestServerOptions,
  backendEnv: Record<string, string>,
): Promise<{ base: TestServerBase; server: RunningServer & { worker: OutboxWorker } }> {
  const ownsDataDir = options.dataDir === undefined;
  // Cluster mode too keeps a data dir: the dev secret and the config file live there.
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), "verifyd-test-"));
  const env: Record<string, string> = {
    VERIFYD_DATA_DIR: dataDir,
    VERIFYD_LOG_LEVEL: "silent",
    ...backendEnv,
    ...options.env,
  };
  if (options.apps || options.configFile) {
    const file = join(dataDir, "config.json");
    writeFileSync(
      file,
      JSON.stringify({ ...options.configFile, ...(options.apps ? { apps: options.apps } : {}) }),
    );
    env.VERIFYD_CONFIG = file;
  }
  const config = loadConfig(env);
  const logger = createLogger({
    level: process.env.VERIFYD_TEST_LOG ?? config.logLevel,
    devCodes: config.mode === "dev",
  });
  const clock = options.clock ?? new FixedClock();
  const email = new RecordingSender("email");
  const sms = new RecordingSender("sms");
  const server = await assembleServer({
    config,
    logger,
    clock,
    ...(options.devSender ? {} : { senders: { email: [email], sms: [sms], ...options.senders } }),
    ...(options.drainMs === undefined ? {} : { drainMs: options.drainMs }),
    ...(options.shareDataDir ? { shareDataDir: true } : {}),
  });
  await server.fastify.ready();
  const { worker } = server;
  if (!worker) throw new Error("the harness delivers on its own thread");
  return {
    server: Object.assign(server, { worker }),
    base: {
      fastify: server.fastify,
      engine: server.engine,
      clock,
      email,
      sms,
      dataDir,
      async deliverAll() {
        while ((await worker.runOnce()) > 0) {
          // keep draining: retries scheduled in the past are due at once under a fixed clock
        }
      },
      async close() {
        await server.close();
        if (ownsDataDir) rmSync(dataDir, { recursive: true, force: true });
      },
    },
  };
}
