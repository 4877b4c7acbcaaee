import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { pathToFileURL } from "node:url";
import Database from "better-sqlite3";
import { afterAll, describe, expect, it } from "vitest";
import { FixedClock } from "../test/fakes/fixed-clock.js";
import { createTestServer } from "../test/harness.js";
import { loadConfig } from "./config/load.js";
import { newTimeOrderedSecret, timeOrderedSecretKey } from "./core/ids.js";
import { startDeliveryThread } from "./delivery-thread.js";
import { createLogger } from "./observability/logger.js";
import { assembleServer } from "./server.js";
import { createSqliteBackend, sqlitePath } from "./storage/sqlite/index.js";

// The thread runs compiled code (a worker thread cannot load TypeScript): the build the vitest
// global setup makes, as the server runs it.
const BUILT_THREAD = new URL("../dist/delivery-thread.js", import.meta.url);
const SECRET = "delivery-thread-test-secret-0123456789";
const logger = createLogger({ level: "silent", devCodes: false });

const dirs: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "verifyd-delivery-thread-"));
  dirs.push(dir);
  return dir;
}
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

async function eventually<T>(probe: () => Promise<T | undefined> | T | undefined, what: string): Promise<T> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/**
 * A server on `dataDir` with the dev inbox, whose codes are fresh by the system clock (the thread
 * reads it); `send` queues a code for `to`, `inboxOf` reads the newest message to it.
 */
async function serverWithInbox(dataDir: string) {
  const server = await createTestServer({
    dataDir,
    devSender: true,
    clock: new FixedClock(Date.now()),
    env: { VERIFYD_SECRET: SECRET },
  });
  const send = async (to: string) => {
    const reply = await server.fastify.inject({
      method: "POST",
      url: "/v1/verifications",
      payload: { channel: "email", to, purpose: "sign_in" },
    });
    expect(reply.statusCode).toBe(201);
    return reply.json<{ id: string }>().id;
  };
  const inboxOf = async (to: string) => (await server.server.backend.devInbox.list(to, 10))[0];
  return { server, send, inboxOf };
}

describe("the delivery thread", () => {
  it("delivers what the server committed, from its own connection, and stops after its deliveries", async () => {
    const dataDir = tempDir();
    const { server, send, inboxOf } = await serverWithInbox(dataDir);
    try {
      // queued before the thread exists: it claims what is due when it starts
      const first = await send("before@example.com");
      const thread = startDeliveryThread({
        config: loadConfig({
          VERIFYD_DATA_DIR: dataDir,
          VERIFYD_SECRET: SECRET,
          VERIFYD_LOG_LEVEL: "silent",
        }),
        secrets: [SECRET],
        logger,
        entry: BUILT_THREAD,
      });
      expect(thread.providers.channelEnabled("email")).toBe(true);
      thread.start();
      const delivered = await eventually(() => inboxOf("before@example.com"), "the first message");
      expect(delivered.code).toMatch(/^\d{6}$/);

      // committed while it runs: a wake has it claimed at once, not at the next poll
      await send("after@example.com");
      thread.wake();
      await eventually(() => inboxOf("after@example.com"), "the second message");

      await thread.stop();
      const record = await server.fastify.inject({ url: `/v1/verifications/${first}?deliveries=true` });
      expect(record.json()).toMatchObject({ deliveries: [{ provider: "dev", status: "sent" }] });
    } finally {
      await server.close();
    }
  });

  // Regression: the thread wrote stdout through a destination of its own, beside the server's; on
  // a pipe that filled up, lines of the two tore into one another. @see logs review 2
  it("has its lines written, whole, by the server's destination, the last ones before it stops", async () => {
    const dataDir = tempDir();
    const { server, send, inboxOf } = await serverWithInbox(dataDir);
    // A slow destination that takes a few bytes at a time, as a pipe that filled up does.
    const received: string[] = [];
    const slow = new Writable({
      highWaterMark: 64,
      write(chunk: Buffer, _encoding, done) {
        const text = String(chunk);
        for (let at = 0; at < text.length; at += 16) received.push(text.slice(at, at + 16));
        setTimeout(done, 1);
      },
    });
    const serverLogger = createLogger({ level: "info", devCodes: false }, slow);
    try {
      const thread = startDeliveryThread({
        config: loadConfig({ VERIFYD_DATA_DIR: dataDir, VERIFYD_SECRET: SECRET, VERIFYD_LOG_LEVEL: "info" }),
        secrets: [SECRET],
        logger: serverLogger,
        entry: BUILT_THREAD,
      });
      thread.start();
      const first = await send("one@example.com");
      await eventually(() => inboxOf("one@example.com"), "the first message");
      serverLogger.info({ burst: "x".repeat(500) }, "a line of the server's own");
      const second = await send("two@example.com");
      thread.wake();
      await eventually(() => inboxOf("two@example.com"), "the second message");
      // stopped right after the delivery: its "message sent" line must still come through
      await thread.stop();
      await new Promise<void>((resolve) => slow.end(resolve));

      const lines = received.join("").split("\n");
      expect(lines.pop()).toBe("");
      const parsed = lines.map((line) => JSON.parse(line) as Record<string, unknown>);
      const sent = parsed.filter((line) => line.msg === "message sent");
      expect(sent.map((line) => line.verificationId)).toEqual([first, second]);
      for (const line of sent) expect(line).toMatchObject({ thread: "delivery", pid: process.pid });
      expect(parsed.some((line) => line.msg === "a line of the server's own")).toBe(true);
    } finally {
      await server.close();
    }
  });

  it("is refused senders made on the server's thread, which could not cross to it", async () => {
    const config = loadConfig({ VERIFYD_DATA_DIR: tempDir() });
    await expect(
      assembleServer({ config, logger, deliveryThread: true, senders: { email: [] } }),
    ).rejects.toThrow(/delivery thread/);
  });

  it("purges the file's expired rows from the thread, batch after batch until none are left", async () => {
    const dataDir = tempDir();
    const store = createSqliteBackend({ path: sqlitePath(dataDir) });
    const insert = store.db.prepare(
      "INSERT INTO tokens (token_hash, app_id, verification_id, channel, recipient, purposes, expires_at) VALUES (?, 'default', 'vf', 'email', 'a@b.co', 'sign_in', ?)",
    );
    const expired = 1_200; // more than one batch of the purge
    /** a token's key as core mints it: timed by its expiry */
    const tokenKey = (expiresAtMs: number) => timeOrderedSecretKey(newTimeOrderedSecret("vt", expiresAtMs));
    const live = tokenKey(Date.now() + 3_600_000);
    store.db.transaction(() => {
      for (let i = 0; i < expired; i++)
        insert.run(tokenKey(Date.now() - 60_000 - i), Date.now() - 60_000 - i);
      insert.run(live, Date.now() + 3_600_000);
    })();
    await store.close();
    const thread = startDeliveryThread({
      config: loadConfig({ VERIFYD_DATA_DIR: dataDir, VERIFYD_SECRET: SECRET, VERIFYD_LOG_LEVEL: "silent" }),
      secrets: [SECRET],
      logger,
      entry: BUILT_THREAD,
    });
    expect(thread.purges).toBe(true);
    thread.start();
    try {
      const reader = new Database(sqlitePath(dataDir), { readonly: true });
      const left = () => reader.prepare("SELECT token_hash FROM tokens").all();
      await eventually(() => (left().length === 1 ? true : undefined), "the expired tokens purged");
      expect(left()).toEqual([{ token_hash: live }]);
      reader.close();
    } finally {
      await thread.stop();
    }
  });

  describe("its handle", () => {
    /** A stand-in thread that logs each start and the wakes it got, and dies on its first start. */
    function standIn(dir: string): URL {
      const file = join(dir, "stand-in.mjs");
      writeFileSync(
        file,
        `import { appendFileSync, existsSync } from "node:fs";
import { parentPort, workerData } from "node:worker_threads";
const log = workerData.config.dataDir + "/events";
const firstStart = !existsSync(log);
appendFileSync(log, "start\\n");
if (firstStart) throw new Error("a bug in the delivery thread");
let wakes = 0;
parentPort.on("message", (message) => {
  if (message === "wake") wakes += 1;
  if (message === "stop") {
    appendFileSync(log, "wakes " + wakes + "\\n");
    parentPort.postMessage("stopped");
  }
});
`,
      );
      return pathToFileURL(file);
    }

    /** Starts the stand-in in a new data dir; `events` is its log. */
    function startStandIn(options: { diesFirst: boolean; healthyAfterMs?: number }) {
      const dir = tempDir();
      const events = join(dir, "events");
      if (!options.diesFirst) writeFileSync(events, "start\n"); // as if it had died once already
      const thread = startDeliveryThread({
        config: loadConfig({ VERIFYD_DATA_DIR: dir }),
        secrets: [SECRET],
        logger,
        entry: standIn(dir),
        ...(options.healthyAfterMs === undefined ? {} : { healthyAfterMs: options.healthyAfterMs }),
      });
      thread.start();
      return { thread, events };
    }

    it("starts a thread that died again, tells it of many commits in one turn once, and stops it", async () => {
      const { thread, events } = startStandIn({ diesFirst: true });
      const started = () => (existsSync(events) ? readFileSync(events, "utf8").split("start").length - 1 : 0);
      await eventually(() => (started() >= 2 ? true : undefined), "a second start after the first died");

      for (let i = 0; i < 50; i++) thread.wake();
      await new Promise((resolve) => setImmediate(resolve));
      for (let i = 0; i < 50; i++) thread.wake();
      await new Promise((resolve) => setTimeout(resolve, 50));

      await thread.stop();
      expect(readFileSync(events, "utf8")).toBe("start\nstart\nwakes 2\n");
      expect(started()).toBe(2); // stopped for good: no start after stop
    });

    it("reports delivery down from its failure until the restarted thread has run a while", async () => {
      const { thread, events } = startStandIn({ diesFirst: true, healthyAfterMs: 300 });
      expect(thread.healthy()).toBe(true); // started, not yet failed
      await eventually(() => (thread.healthy() ? undefined : true), "the failure to show");
      await eventually(
        () => (readFileSync(events, "utf8") === "start\nstart\n" ? true : undefined),
        "a restart",
      );
      expect(thread.healthy()).toBe(false);
      await eventually(() => (thread.healthy() ? true : undefined), "delivery up again");
      await thread.stop();
      expect(thread.healthy()).toBe(true); // stopped on purpose
    });

    it("tells it of commits in many turns close together once more, not once a turn", async () => {
      const { thread, events } = startStandIn({ diesFirst: false });
      await eventually(
        () => (readFileSync(events, "utf8") === "start\nstart\n" ? true : undefined),
        "a start",
      );
      // the first at once, then ten turns' wakes within a few milliseconds: one more message
      for (let turn = 0; turn < 11; turn++) {
        thread.wake();
        await new Promise((resolve) => setImmediate(resolve));
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
      await thread.stop();
      // 2, or 3 on a machine so loaded that the ten turns took longer than the spacing
      const wakes = Number(/wakes (\d+)/.exec(readFileSync(events, "utf8"))?.[1]);
      expect(wakes).toBeGreaterThanOrEqual(2);
      expect(wakes).toBeLessThanOrEqual(3);
    });
  });
});
