import { afterEach, describe, expect, it } from "vitest";
import { AppDirectory } from "../../src/core/apps/apps.js";
import { createCircuitBreakers } from "../../src/core/delivery/circuit-breaker.js";
import { createOutboxWorker, type OutboxWorker } from "../../src/core/delivery/outbox-worker.js";
import type { MessageSender, RenderedMessage } from "../../src/core/ports.js";
import { CodeSecrets } from "../../src/core/secrets.js";
import { createSqliteBackend, type SqliteBackend, sqlitePath } from "../../src/storage/sqlite/index.js";
import { createTestServer, type TestServer } from "../harness.js";

/**
 * Issue 7: two workers on one store deliver 1,000 messages with no duplicate. Each worker has its
 * own connection to the SQLite file (as two processes would), and a provider that answers after a
 * random few milliseconds, so their claims interleave at every await.
 */

const SECRET = "two-workers-secret-0123456789";
const MESSAGES = 1_000;

let t: TestServer | undefined;
const backends: SqliteBackend[] = [];
afterEach(async () => {
  for (const backend of backends.splice(0)) backend.close();
  await t?.close();
  t = undefined;
});

/** A provider that counts how often it got each message. */
function countingSender(): MessageSender & { received: Map<string, number>; byWorker: Map<string, number> } {
  const received = new Map<string, number>();
  const byWorker = new Map<string, number>();
  return {
    id: "counting",
    channel: "email",
    received,
    byWorker,
    async send(message: RenderedMessage) {
      await new Promise((resolve) => setTimeout(resolve, Math.random() * 3));
      received.set(message.messageId, (received.get(message.messageId) ?? 0) + 1);
      return {};
    },
  };
}

describe("two outbox workers on one store", () => {
  it(`deliver ${MESSAGES} messages exactly once between them`, async () => {
    t = await createTestServer({
      env: { VERIFYD_SECRET: SECRET },
      apps: [{ id: "default", abuse: { captcha: { native: "never" } } }],
    });
    const server = t;
    const app = await server.engine.apps.byId("default");
    if (!app) throw new Error("no default app");
    // Queue them in groups, so the group commit batches the inserts as concurrent requests would.
    for (let start = 0; start < MESSAGES; start += 100) {
      await Promise.all(
        Array.from({ length: 100 }, (_, offset) =>
          server.engine.sendCode({
            app,
            channel: "email",
            to: `user${start + offset}@example.com`,
            purpose: "sign_in",
            rule: "any",
          }),
        ),
      );
    }

    const sender = countingSender();
    const workers: [string, OutboxWorker][] = ["a", "b"].map((name) => {
      const backend = createSqliteBackend({ path: sqlitePath(server.dataDir) });
      backends.push(backend);
      const delivered = {
        ...sender,
        send: async (message: RenderedMessage) => {
          const receipt = await sender.send(message);
          sender.byWorker.set(name, (sender.byWorker.get(name) ?? 0) + 1);
          return receipt;
        },
      };
      const worker = createOutboxWorker({
        outbox: backend.outbox,
        apps: new AppDirectory(backend.apps, server.clock),
        secrets: new CodeSecrets([SECRET]),
        clock: server.clock,
        logger: { debug() {}, info() {}, warn() {}, error() {} },
        route: () => [delivered],
        batchSize: 25,
        breakers: createCircuitBreakers({ clock: server.clock, failureThreshold: 5, coolDownMs: 30_000 }),
      });
      return [name, worker];
    });

    const drain = async (worker: OutboxWorker) => {
      while ((await worker.runOnce()) > 0) {
        // keep claiming until the outbox has nothing due
      }
    };
    await Promise.all(workers.map(([, worker]) => drain(worker)));

    const duplicates = [...sender.received.values()].filter((count) => count > 1).length;
    console.info(
      `two workers: ${sender.received.size} messages delivered, ${duplicates} duplicates, split ${JSON.stringify(Object.fromEntries(sender.byWorker))}`,
    );
    expect(sender.received.size).toBe(MESSAGES);
    expect(duplicates).toBe(0);
    // both took part, or the test proves nothing about concurrent claims
    expect(sender.byWorker.get("a")).toBeGreaterThan(0);
    expect(sender.byWorker.get("b")).toBeGreaterThan(0);
    const rows = server.server.backend.db
      .prepare("SELECT status, count(*) AS n FROM outbox GROUP BY status")
      .all();
    expect(rows).toEqual([{ status: "sent", n: MESSAGES }]);
  });
});
