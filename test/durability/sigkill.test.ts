import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, describe, expect, it } from "vitest";
import { createSqliteBackend, sqlitePath } from "../../src/storage/sqlite/index.js";
import {
  eventually,
  getJson,
  killAll,
  postJson,
  startServer,
  type VerifydServer,
} from "../e2e/verifyd-process.js";

/**
 * DESIGN.md: durable means it survives a crash of the process (SIGKILL), and a 2xx answer means the
 * message is durably queued. These tests run the real server (`node dist/main.js`) on a data dir,
 * kill it with SIGKILL and start it again on the same data dir.
 */

const SECRET = "durability-secret-0123456789";
const dirs: string[] = [];
afterAll(async () => {
  await killAll();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/** A data dir whose config lets one test client send many codes (no per-IP limit, no captcha). */
function dataDir(): { dir: string; env: Record<string, string> } {
  const dir = mkdtempSync(join(tmpdir(), "verifyd-durability-"));
  dirs.push(dir);
  const config = join(dir, "verifyd.json");
  writeFileSync(
    config,
    JSON.stringify({
      apps: [{ id: "default", policy: { perIp: [] }, abuse: { captcha: { native: "never" } } }],
    }),
  );
  return { dir, env: { VERIFYD_DATA_DIR: dir, VERIFYD_SECRET: SECRET, VERIFYD_CONFIG: config } };
}

const recipient = (i: number) => `user${i}@example.com`;

async function send(server: VerifydServer, to: string) {
  return postJson(`${server.url}/v1/verifications`, { channel: "email", to, purpose: "sign_in" });
}

async function inbox(server: VerifydServer, to: string): Promise<{ code: string; id: string }[]> {
  const reply = await getJson(`${server.url}/v1/dev/inbox?to=${encodeURIComponent(to)}`);
  expect(reply.status).toBe(200);
  return reply.body.messages as { code: string; id: string }[];
}

/** Waits until every recipient's inbox holds a message; returns each recipient's messages. */
async function allDelivered(server: VerifydServer, recipients: string[], timeoutMs: number) {
  return eventually(
    async () => {
      const boxes = await Promise.all(recipients.map((to) => inbox(server, to)));
      return boxes.every((box) => box.length > 0) ? boxes : undefined;
    },
    timeoutMs,
    "every message to be delivered",
  );
}

// Each test has its own data dir and port, so they run concurrently.
describe.concurrent("durability across SIGKILL", () => {
  it("verifies a code issued before the crash after a restart on the same data dir", async ({ expect }) => {
    const { env } = dataDir();
    let server = await startServer(env);
    const sent = await send(server, recipient(0));
    expect(sent.status).toBe(201);
    const [message] = await eventually(
      async () => {
        const box = await inbox(server, recipient(0));
        return box.length > 0 ? box : undefined;
      },
      10_000,
      "the dev inbox",
    );
    expect((await server.stop("SIGKILL")).signal).toBe("SIGKILL");

    server = await startServer(env);
    const view = await getJson(`${server.url}/v1/verifications/${sent.body.id}`);
    expect(view.body).toMatchObject({ status: "pending", attempts_remaining: 5 });
    const checked = await postJson(`${server.url}/v1/verifications/check`, {
      id: sent.body.id,
      code: message?.code,
    });
    expect(checked.status).toBe(200);
    expect(checked.body.status).toBe("approved");
    await server.stop("SIGKILL");
  });

  it("delivers, after a restart, outbox rows committed before the crash that could not be delivered before it", async ({
    expect,
  }) => {
    const { dir, env } = dataDir();
    // Fault injection: until the trigger is dropped, the dev sender's write into the inbox fails,
    // so the worker can only record failed tries and reschedule. Each row stays queued.
    const setup = createSqliteBackend({ path: sqlitePath(dir) });
    setup.db.exec(
      "CREATE TRIGGER block_delivery BEFORE INSERT ON dev_inbox BEGIN SELECT RAISE(ABORT, 'delivery blocked by the test'); END",
    );
    setup.close();

    let server = await startServer(env);
    // Four messages: their first tries fail once each, below the five failures in a row that
    // would pause the provider for 30 s (the outbox worker's circuit breaker).
    const recipients = Array.from({ length: 4 }, (_, i) => recipient(i));
    const sent = await Promise.all(recipients.map((to) => send(server, to)));
    expect(sent.map((reply) => reply.status)).toEqual(recipients.map(() => 201));
    const ids = sent.map((reply) => reply.body.id as string);
    // Every row was tried (so the worker did run) and failed; the next try is about a second away.
    let views: Awaited<ReturnType<typeof getJson>>[] = [];
    await eventually(
      async () => {
        views = await Promise.all(ids.map((id) => getJson(`${server.url}/v1/verifications/${id}`)));
        const tried = views.every((view) => {
          const deliveries = view.body.deliveries as { status: string }[];
          return deliveries.length > 0 && deliveries.every((delivery) => delivery.status === "failed");
        });
        return tried ? true : undefined;
      },
      20_000,
      "a failed delivery try for every message",
      () => JSON.stringify(views.map((view) => view.body.deliveries)),
    );
    expect(JSON.stringify(views)).toContain("delivery blocked by the test");
    await server.stop("SIGKILL");

    // What the crash left behind: every row queued, its sealed code kept, nothing delivered.
    const db = new Database(sqlitePath(dir));
    const rows = db.prepare("SELECT verification_id, status, sealed_code FROM outbox").all() as {
      verification_id: string;
      status: string;
      sealed_code: string | null;
    }[];
    expect(rows).toHaveLength(4);
    for (const row of rows) expect(row).toMatchObject({ status: "queued", sealed_code: expect.any(String) });
    expect(db.prepare("SELECT count(*) AS n FROM dev_inbox").get()).toEqual({ n: 0 });
    db.exec("DROP TRIGGER block_delivery");
    db.close();

    server = await startServer(env);
    // Due again within a second or two; had the provider been paused, 30 s (hence the bound).
    const boxes = await allDelivered(server, recipients, 45_000);
    for (const box of boxes) expect(box).toHaveLength(1);
    // ...and each delivered code is the one that was issued.
    const checks = await Promise.all(
      ids.map((id, i) => postJson(`${server.url}/v1/verifications/check`, { id, code: boxes[i]?.[0]?.code })),
    );
    expect(checks.map((check) => check.status)).toEqual(ids.map(() => 200));
    await server.stop("SIGKILL");
  }, 60_000);

  it("delivers every message answered 201 exactly once when the crash comes right after the last answer", async ({
    expect,
  }) => {
    const { dir, env } = dataDir();
    let server = await startServer(env);
    const recipients = Array.from({ length: 20 }, (_, i) => recipient(i));
    const sent = await Promise.all(recipients.map((to) => send(server, to)));
    // SIGKILL the moment the last 201 is in: whatever the worker had not finished is cut off.
    await server.stop("SIGKILL");
    expect(sent.map((reply) => reply.status)).toEqual(recipients.map(() => 201));

    // Every answered send left a row, either delivered (code erased, in the inbox) or still
    // queued with its sealed code; none is lost or half-finished.
    const db = new Database(sqlitePath(dir));
    const rows = db
      .prepare(
        "SELECT o.status, o.sealed_code IS NOT NULL AS sealed, count(d.id) AS inboxed FROM outbox o LEFT JOIN dev_inbox d ON d.id = o.id GROUP BY o.id",
      )
      .all() as { status: string; sealed: number; inboxed: number }[];
    db.close();
    expect(rows).toHaveLength(20);
    for (const row of rows) {
      expect([
        { status: "sent", sealed: 0, inboxed: 1 },
        { status: "queued", sealed: 1, inboxed: 0 },
        // killed between the inbox write and marking the row sent: delivered again after the lease
        { status: "queued", sealed: 1, inboxed: 1 },
      ]).toContainEqual(row);
    }

    server = await startServer(env);
    // A message claimed but not finished when the process died is retried when its 30 s lease
    // lapses; anything else is due at once.
    const boxes = await allDelivered(server, recipients, 45_000);
    for (const box of boxes) expect(box).toHaveLength(1);
    const checks = await Promise.all(
      sent.map((reply, i) =>
        postJson(`${server.url}/v1/verifications/check`, { id: reply.body.id, code: boxes[i]?.[0]?.code }),
      ),
    );
    expect(checks.map((check) => check.status)).toEqual(sent.map(() => 200));
    await server.stop("SIGKILL");
  }, 90_000);
});
