import Database from "better-sqlite3";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createTestServer, type TestServer } from "../harness.js";

// A file SQLite cannot read (a failing disk) makes the embedded store unavailable: each face
// answers its own 503 shape, as for a full disk or a cluster's unreachable backend, not the 500 of
// a bug. The fault is injected where the disk would raise it: better-sqlite3's statements on the
// server's connection throw SQLite's own I/O error, and every store above them runs unchanged.
describe("the embedded store when its file cannot be read", () => {
  let t: TestServer;
  let client = 0;
  let restore = () => {};
  beforeEach(async () => {
    t = await createTestServer();
  });
  afterEach(async () => {
    restore();
    await t.close();
  });

  const post = (url: string, payload: Record<string, unknown>) =>
    t.fastify.inject({ method: "POST", url, payload, remoteAddress: `10.1.${++client}.1` });
  const get = (url: string) => t.fastify.inject({ method: "GET", url, remoteAddress: `10.1.${++client}.1` });

  /** From now on every read on the server's connection fails as a failing disk's would. */
  const failReads = () => {
    const db = t.server.backend.db;
    const statement = Object.getPrototypeOf(db.prepare("SELECT 1")) as Record<string, unknown>;
    const originals = { get: statement.get, all: statement.all } as Record<
      string,
      (...args: unknown[]) => unknown
    >;
    for (const name of ["get", "all"] as const) {
      statement[name] = function (this: { database: unknown }, ...args: unknown[]) {
        if (this.database === db) throw new Database.SqliteError("disk I/O error", "SQLITE_IOERR_READ");
        return originals[name]?.apply(this, args);
      };
    }
    restore = () => Object.assign(statement, originals);
  };

  it("answers reads with 503 in each face's shape, and serves again once the file reads", async () => {
    const sent = await post("/v1/verifications", {
      channel: "email",
      to: "ann@example.com",
      purpose: "sign_in",
    });
    expect(sent.statusCode, sent.body).toBe(201);
    const id = String(sent.json().id);
    failReads();

    const status = await get(`/v1/verifications/${id}`);
    expect(status.statusCode, status.body).toBe(503);
    expect(status.headers["content-type"]).toMatch(/^application\/problem\+json/);
    expect(status.json()).toMatchObject({ code: "STORE_UNAVAILABLE", status: 503 });

    const check = await post("/v1/verifications/check", { id, code: "000000" });
    expect(check.statusCode, check.body).toBe(503);
    expect(check.json()).toMatchObject({ code: "STORE_UNAVAILABLE" });

    const cloudbase = await post("/auth/v1/verification", { email: "cb@example.com", target: "ANY" });
    expect(cloudbase.statusCode, cloudbase.body).toBe(503);
    expect(cloudbase.json()).toMatchObject({ error: "unavailable", error_code: 4054 });

    // Fresns answers every outcome with HTTP 200 and its own code: 32301, the service did not answer.
    const fresns = await post("/api/v2/common/send-verify-code", {
      type: "email",
      useType: 5,
      templateId: 1,
      account: "fresns@example.com",
    });
    expect(fresns.statusCode, fresns.body).toBe(200);
    expect(fresns.json()).toMatchObject({ code: 32301 });

    const inbox = await get("/v1/dev/inbox?to=ann@example.com");
    expect(inbox.statusCode, inbox.body).toBe(503);
    expect(inbox.json()).toMatchObject({ code: "STORE_UNAVAILABLE" });

    restore();
    const again = await get(`/v1/verifications/${id}`);
    expect(again.statusCode, again.body).toBe(200);
    expect(again.json()).toMatchObject({ id, status: "pending" });
  });
});
