import type { OutboxWorker } from "../../src/core/delivery/outbox-worker.js";
import type { Engine } from "../../src/core/engine.js";
import type { App, Channel } from "../../src/core/types.js";
import type { SqliteBackend } from "../../src/storage/sqlite/index.js";
import { createTestServer, type TestServer } from "../harness.js";
import type { FixedClock } from "./fixed-clock.js";
import type { RecordingSender } from "./recording-sender.js";

export const SECRET_A = "secret-a-0123456789abcdef";
export const SECRET_B = "secret-b-0123456789abcdef";

export interface TestEngineOptions {
  /** HMAC secrets, newest first (default: [SECRET_A]) */
  secrets?: string[];
  /** fields of the app `default` to change (policy, test recipients, abuse, ...); its name is "Shop" */
  app?: Partial<App>;
  defaultCountry?: string;
  /** channels without a provider (production with no real provider) */
  disabledChannels?: Channel[];
}

export interface TestEngine {
  engine: Engine;
  backend: SqliteBackend;
  clock: FixedClock;
  email: RecordingSender;
  sms: RecordingSender;
  dataDir: string;
  worker: OutboxWorker;
  /** the app `default` as currently stored */
  app(): Promise<App>;
  /** saves changes to the app `default` */
  updateApp(changes: Partial<App>): Promise<App>;
  /** runs outbox rounds until nothing is due */
  deliverAll(): Promise<void>;
  /** the code last delivered to a normalised address, on either channel */
  lastCode(to: string): string;
  /** the same data dir and clock under other secrets (a restart after a rotation) */
  withSecrets(secrets: string[]): Promise<TestEngine>;
  close(): Promise<void>;
}

/**
 * The real engine as the composition root builds it (real config loading, SQLite file, outbox
 * worker), with a fixed clock and recording senders, for core unit tests that call the use cases
 * directly. Built on `createTestServer`, so it never drifts from what `main.ts` assembles.
 */
export async function createTestEngine(options: TestEngineOptions = {}): Promise<TestEngine> {
  return open(options, undefined, undefined);
}

async function open(
  options: TestEngineOptions,
  shared: { dataDir: string; clock: FixedClock } | undefined,
  owner: TestServer[] | undefined,
): Promise<TestEngine> {
  const env: Record<string, string> = { VERIFYD_SECRET: (options.secrets ?? [SECRET_A]).join(",") };
  if (options.defaultCountry) env.VERIFYD_DEFAULT_COUNTRY = options.defaultCountry;
  const server = await createTestServer({
    env,
    ...(shared ? { ...shared, shareDataDir: true } : {}),
    ...(options.disabledChannels
      ? { senders: Object.fromEntries(options.disabledChannels.map((channel) => [channel, []])) }
      : {}),
  });
  // Restarts share the first server's data dir; closing the first removes it, so it closes last.
  const servers = owner ?? [];
  servers.push(server);
  const { engine } = server;
  const self: TestEngine = {
    engine,
    backend: server.server.backend,
    clock: server.clock,
    email: server.email,
    sms: server.sms,
    dataDir: server.dataDir,
    worker: server.server.worker,
    async app() {
      const app = await engine.apps.byId("default");
      if (!app) throw new Error("the app default is missing");
      return app;
    },
    async updateApp(changes) {
      const next = { ...(await self.app()), ...changes };
      await engine.apps.save(next);
      return next;
    },
    deliverAll: () => server.deliverAll(),
    lastCode(to) {
      const code = server.email.lastCodeFor(to) ?? server.sms.lastCodeFor(to);
      if (code === undefined) throw new Error(`nothing was delivered to ${to}`);
      return code;
    },
    withSecrets(secrets) {
      return open(
        { ...options, secrets, app: {} },
        { dataDir: server.dataDir, clock: server.clock },
        servers,
      );
    },
    async close() {
      if (owner) return;
      for (const each of servers.reverse()) await each.close();
    },
  };
  // The first server names the app, so messages read "Your Shop sign-in code"; restarts keep it.
  if (!shared) await self.updateApp({ name: "Shop", ...options.app });
  return self;
}
