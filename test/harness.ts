import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { FastifyInstance } from "fastify";
import { loadConfig } from "../src/config/load.js";
import type { AppConfig } from "../src/config/schema.js";
import type { OutboxWorker } from "../src/core/delivery/outbox-worker.js";
import type { Engine } from "../src/core/engine.js";
import type { MessageSender } from "../src/core/ports.js";
import type { Channel } from "../src/core/types.js";
import { createLogger } from "../src/observability/logger.js";
import { assembleServer, type RunningServer } from "../src/server.js";
import { type SqliteBackend, sqliteBackendOf } from "../src/storage/sqlite/index.js";
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
  clock?: FixedClock;
  /** providers per channel instead of the recording senders (an empty list disables a channel) */
  senders?: Partial<Record<Channel, MessageSender[]>>;
}

export interface TestServer {
  /**
   * the harness always runs the embedded mode, so its backend is SQLite's (tests may read the
   * file), with the outbox worker on the test's thread so that tests drive it
   */
  server: RunningServer & { backend: SqliteBackend; worker: OutboxWorker };
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

/**
 * A whole verifyd (real config loading, real SQLite file, real engine and HTTP app) with a fixed
 * clock and recording senders; requests go through `fastify.inject`, no sockets.
 */
export async function createTestServer(options: TestServerOptions = {}): Promise<TestServer> {
  const ownsDataDir = options.dataDir === undefined;
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), "verifyd-test-"));
  const env: Record<string, string> = {
    VERIFYD_DATA_DIR: dataDir,
    VERIFYD_LOG_LEVEL: "silent",
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
  });
  await server.fastify.ready();
  const { worker } = server;
  if (!worker) throw new Error("the harness delivers on its own thread");
  return {
    server: Object.assign(server, { backend: sqliteBackendOf(server.backend), worker }),
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
  };
}
