import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createTestServer, type TestServer } from "../harness.js";

// A full disk (here a file SQLite may not grow past, which gives the same SQLITE_FULL) makes the
// embedded store unavailable as an unreachable backend makes the cluster's: each face answers its
// own 503, nothing of the refused request is written, and service resumes when there is room.
describe("the embedded store on a full disk", () => {
  let t: TestServer;
  let client = 0;
  beforeEach(async () => {
    t = await createTestServer();
  });
  afterEach(() => t.close());

  const post = (url: string, payload: Record<string, unknown>) =>
    t.fastify.inject({ method: "POST", url, payload, remoteAddress: `10.0.${++client}.1` });
  const nativeSend = (to: string) => post("/v1/verifications", { channel: "email", to, purpose: "sign_in" });
  const rows = (table: string) =>
    (t.server.backend.db.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n;
  const fillTheDisk = () => {
    const db = t.server.backend.db;
    db.pragma(`max_page_count = ${db.pragma("page_count", { simple: true })}`);
  };
  const makeRoom = () => t.server.backend.db.pragma("max_page_count = 1073741823");

  it("answers sends with 503 in each face's shape, writes nothing of them, and recovers", async () => {
    expect((await nativeSend("first@example.com")).statusCode).toBe(201);
    fillTheDisk();
    // new recipients until one needs a page the file has no room for
    let refused = await nativeSend("r0@example.com");
    for (let i = 1; refused.statusCode === 201 && i < 500; i++)
      refused = await nativeSend(`r${i}@example.com`);
    expect(refused.statusCode, refused.body).toBe(503);
    expect(refused.headers["content-type"]).toMatch(/^application\/problem\+json/);
    expect(refused.json()).toMatchObject({ code: "STORE_UNAVAILABLE", status: 503 });
    const codes = rows("codes");
    const outbox = rows("outbox");

    const cloudbase = await post("/auth/v1/verification", { email: "cb@example.com", target: "ANY" });
    expect(cloudbase.statusCode, cloudbase.body).toBe(503);
    expect(cloudbase.json()).toMatchObject({ error: "unavailable", error_code: 4054 });
    // the refused sends left no code and no message to deliver
    expect([rows("codes"), rows("outbox")]).toEqual([codes, outbox]);

    makeRoom();
    expect((await nativeSend("after@example.com")).statusCode).toBe(201);
    await t.deliverAll();
    expect(t.email.lastCodeFor("after@example.com")).toMatch(/^\d{6}$/);
  });
});
