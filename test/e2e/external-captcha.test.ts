import { afterEach, describe, expect, it } from "vitest";
import { createTestServer, type TestServer } from "../harness.js";
import { type CaptchaVerifyStub, startCaptchaVerifyStub } from "../servers/captcha-verify-stub.js";

let t: TestServer | undefined;
let stub: CaptchaVerifyStub | undefined;
afterEach(async () => {
  await t?.close();
  await stub?.close();
  t = undefined;
  stub = undefined;
});

async function serverWithTurnstile(): Promise<TestServer> {
  stub = await startCaptchaVerifyStub();
  return createTestServer({
    apps: [
      {
        id: "default",
        abuse: {
          captcha: { native: "always" },
          external: { provider: "turnstile", secret: "turnstile-secret", verifyUrl: stub.url },
        },
      },
    ],
  });
}

const send = (server: TestServer, to: string, token: string) =>
  server.fastify.inject({
    method: "POST",
    url: "/v1/verifications",
    headers: { "x-captcha-token": token },
    payload: { channel: "email", to, purpose: "sign_in" },
  });

describe("a third-party captcha widget (abuse.external)", () => {
  it("accepts a send whose widget token the vendor confirms, sending it the secret and client IP", async () => {
    t = await serverWithTurnstile();
    stub?.reply({ json: { success: true } });
    const answer = await send(t, "ann@example.com", "widget-token-1");
    expect(answer.statusCode).toBe(201);
    expect(stub?.requests[0]?.form).toMatchObject({
      secret: "turnstile-secret",
      response: "widget-token-1",
      remoteip: "127.0.0.1",
    });
  });

  it("refuses a send whose widget token the vendor rejects", async () => {
    t = await serverWithTurnstile();
    stub?.reply({ json: { success: false, "error-codes": ["timeout-or-duplicate"] } });
    const answer = await send(t, "ann@example.com", "widget-token-2");
    expect(answer.statusCode).toBe(400);
    expect(answer.json().code).toBe("CAPTCHA_FAILED");
  });

  it("still requires a captcha when none is presented", async () => {
    t = await serverWithTurnstile();
    const answer = await t.fastify.inject({
      method: "POST",
      url: "/v1/verifications",
      payload: { channel: "email", to: "ann@example.com", purpose: "sign_in" },
    });
    expect(answer.statusCode).toBe(428);
  });
});

describe("captcha challenges per client", () => {
  it("refuses the 31st challenge from one IP in 10 minutes, and serves it again after", async () => {
    t = await createTestServer();
    for (let n = 0; n < 30; n++) {
      const ok = await t.fastify.inject({ method: "POST", url: "/v1/captcha", payload: { type: "image" } });
      expect(ok.statusCode).toBe(200);
    }
    const refused = await t.fastify.inject({
      method: "POST",
      url: "/v1/captcha",
      payload: { type: "image" },
    });
    expect(refused.statusCode).toBe(429);
    expect(refused.json()).toMatchObject({ code: "RATE_LIMITED" });
    expect(Number(refused.headers["retry-after"])).toBeGreaterThan(0);
    t.clock.advanceSeconds(601);
    const later = await t.fastify.inject({ method: "POST", url: "/v1/captcha", payload: { type: "image" } });
    expect(later.statusCode).toBe(200);
  });

  it("gives no new challenge to an IP after 10 wrong answers", async () => {
    t = await createTestServer();
    for (let n = 0; n < 10; n++) {
      const challenge = await t.fastify.inject({
        method: "POST",
        url: "/v1/captcha",
        payload: { type: "image" },
      });
      const wrong = await t.fastify.inject({
        method: "POST",
        url: "/v1/captcha/verify",
        payload: { token: challenge.json().token, answer: "!!!!" },
      });
      expect(wrong.statusCode).toBe(400);
    }
    const refused = await t.fastify.inject({
      method: "POST",
      url: "/v1/captcha",
      payload: { type: "image" },
    });
    expect(refused.statusCode).toBe(429);
  });
});
