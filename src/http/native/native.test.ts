import { afterEach, describe, expect, it } from "vitest";
import { createTestServer, type TestServer } from "../../../test/harness.js";

let t: TestServer;
afterEach(async () => {
  await t?.close();
});

describe("native API: send -> deliver -> check -> redeem", () => {
  it("approves the delivered code once and redeems its token once", async () => {
    t = await createTestServer();
    const sent = await t.fastify.inject({
      method: "POST",
      url: "/v1/verifications",
      payload: { channel: "email", to: "Ann@Example.COM", purpose: "sign_in" },
    });
    expect(sent.statusCode).toBe(201);
    const body = sent.json();
    expect(body).toMatchObject({
      channel: "email",
      to: "A***@example.com",
      status: "pending",
      expires_in: 600,
      resend_after: 60,
    });
    await t.deliverAll();
    const code = t.email.lastCodeFor("Ann@example.com");
    expect(code).toMatch(/^\d{6}$/);

    const checked = await t.fastify.inject({
      method: "POST",
      url: "/v1/verifications/check",
      payload: { id: body.id, code },
    });
    expect(checked.statusCode).toBe(200);
    const { token } = checked.json();

    const again = await t.fastify.inject({
      method: "POST",
      url: "/v1/verifications/check",
      payload: { id: body.id, code },
    });
    expect(again.statusCode).toBe(410);
    expect(again.json().code).toBe("CODE_ALREADY_USED");

    const redeemed = await t.fastify.inject({ method: "POST", url: "/v1/tokens/redeem", payload: { token } });
    expect(redeemed.json()).toEqual({
      channel: "email",
      to: "Ann@example.com",
      purpose: "sign_in",
      app: "default",
    });
    const twice = await t.fastify.inject({ method: "POST", url: "/v1/tokens/redeem", payload: { token } });
    expect(twice.statusCode).toBe(404);
  });
});
