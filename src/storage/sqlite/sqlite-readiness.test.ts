import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { createTestServer, type TestServer } from "../../../test/harness.js";
import { createSqliteBackend, type SqliteBackend } from "./index.js";
import type { SqliteDatabase } from "./sqlite-database.js";

// A full disk (a file SQLite may not grow past gives the same SQLITE_FULL; see
// test/e2e/disk-full.test.ts) answered every write with 503 while /readyz, which ran `SELECT 1`,
// answered 200: a load balancer kept sending traffic to a store that could take none.
const fillTheDisk = (db: SqliteDatabase) =>
  db.pragma(`max_page_count = ${db.pragma("page_count", { simple: true })}`);
const makeRoom = (db: SqliteDatabase) => db.pragma("max_page_count = 1073741823");
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("embedded readiness while writes fail", () => {
  let t: TestServer | undefined;
  let backend: SqliteBackend | undefined;
  let dir: string | undefined;
  afterEach(async () => {
    await t?.close();
    await backend?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
    t = backend = dir = undefined;
  });

  it("answers /readyz 503 once a write was refused for a full disk", async () => {
    t = await createTestServer();
    const server = t;
    const readyz = async () => (await server.fastify.inject({ method: "GET", url: "/readyz" })).statusCode;
    let client = 0;
    const send = (to: string) =>
      server.fastify.inject({
        method: "POST",
        url: "/v1/verifications",
        payload: { channel: "email", to, purpose: "sign_in" },
        remoteAddress: `10.0.${++client}.1`,
      });
    expect((await send("first@example.com")).statusCode).toBe(201);
    expect(await readyz()).toBe(200);
    fillTheDisk(server.server.backend.db);
    let refused = await send("r0@example.com");
    for (let i = 1; refused.statusCode === 201 && i < 500; i++) refused = await send(`r${i}@example.com`);
    expect(refused.json()).toMatchObject({ code: "STORE_UNAVAILABLE", status: 503 });
    const answer = await server.fastify.inject({ method: "GET", url: "/readyz" });
    expect(answer.statusCode).toBe(503);
    expect(answer.json()).toEqual({ status: "unavailable" });
  });

  it("is ready again once no write has failed for the window", async () => {
    dir = mkdtempSync(join(tmpdir(), "verifyd-ready-"));
    const store = createSqliteBackend({ path: join(dir, "verifyd.db"), unreadyAfterFaultMs: 300 });
    backend = store;
    const add = (n: number) =>
      store.devInbox.add({
        id: `msg_${n}`,
        appId: "default",
        channel: "email",
        to: `r${n}@example.com`,
        subject: "Your code",
        text: "x".repeat(2_000),
        code: "042917",
        createdAtMs: n,
      });
    expect(await store.ready()).toBe(true);
    fillTheDisk(store.db);
    let failed: unknown;
    for (let n = 0; failed === undefined && n < 500; n++)
      await add(n).catch((error: unknown) => (failed = error));
    expect(failed).toMatchObject({ code: "STORE_UNAVAILABLE" });
    expect(await store.ready()).toBe(false);
    makeRoom(store.db);
    await add(1_000);
    // a write that succeeds does not end the window at once: on a real full disk some still do
    expect(await store.ready()).toBe(false);
    await sleep(350);
    expect(await store.ready()).toBe(true);
  });
});
