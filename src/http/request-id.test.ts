import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestServer, type TestServer } from "../../test/harness.js";

// CloudBase's face echoes the request id in `x-request-id` (app.ts reads the caller's there).
const echoedId = async (t: TestServer, headers: Record<string, string> = {}) =>
  (await t.fastify.inject({ method: "GET", url: "/auth/v1/no-such-route", headers })).headers[
    "x-request-id"
  ] as string;

describe("request ids", () => {
  // Two servers stand for two processes (or one process and its restart).
  let one: TestServer;
  let other: TestServer;
  beforeAll(async () => {
    [one, other] = await Promise.all([createTestServer(), createTestServer()]);
  });
  afterAll(async () => {
    await Promise.all([one.close(), other.close()]);
  });

  it("are unique across processes and restarts, not Fastify's req-1 in each", async () => {
    const ids = [await echoedId(one), await echoedId(one), await echoedId(other), await echoedId(other)];
    expect(new Set(ids).size).toBe(4);
    for (const id of ids) expect(id).toMatch(/^[0-9a-f]{10}-[0-9a-z]+$/);
    // one process's ids share its prefix; another's differ from it
    const prefix = (id: string | undefined) => id?.split("-")[0];
    expect(prefix(ids[0])).toBe(prefix(ids[1]));
    expect(prefix(ids[2])).not.toBe(prefix(ids[0]));
  });

  it("keeps the caller's own id when it is at most 64 characters of [A-Za-z0-9._:-], and echoes it", async () => {
    expect(await echoedId(one, { "x-request-id": "trace-42.a:b" })).toBe("trace-42.a:b");
    expect(await echoedId(one, { "x-request-id": "x".repeat(64) })).toBe("x".repeat(64));
  });

  it("makes its own in place of a long or odd one, and echoes that", async () => {
    for (const odd of ["x".repeat(65), "R".repeat(16_000), "has space", "a/b", "semi;colon"])
      expect(await echoedId(one, { "x-request-id": odd })).toMatch(/^[0-9a-f]{10}-[0-9a-z]+$/);
  });
});
