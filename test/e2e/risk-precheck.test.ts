import { afterEach, describe, expect, it } from "vitest";
import { createTestServer, type TestServer } from "../harness.js";

let t: TestServer | undefined;
afterEach(async () => {
  await t?.close();
  t = undefined;
});

const send = (server: TestServer, payload: unknown, headers: Record<string, string> = {}) =>
  server.fastify.inject({ method: "POST", url: "/v1/verifications", headers, payload: payload as string });

describe("the captcha refusal before the body is read", () => {
  it("answers a client over its risk budget with 428 without reading its request (even a malformed one)", async () => {
    t = await createTestServer();
    for (let n = 0; n < 3; n++) {
      const ok = await send(t, { channel: "email", to: `user${n}@example.com`, purpose: "sign_in" });
      expect(ok.statusCode).toBe(201);
    }
    const refused = await send(t, "{not json", { "content-type": "application/json" });
    expect(refused.statusCode).toBe(428);
    expect(refused.json()).toMatchObject({ code: "CAPTCHA_REQUIRED" });
    expect(Number(refused.headers["retry-after"])).toBe(600);
  });

  it("lets a malformed request from a client within its budget reach validation (400)", async () => {
    t = await createTestServer();
    const refused = await send(t, "{not json", { "content-type": "application/json" });
    expect(refused.statusCode).toBe(400);
  });
});
