import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestServer, type TestServer } from "../../../test/harness.js";

// Regression: a client that sets `Content-Type: application/json` on every request had its bodiless
// cancel refused 400 "The body must not be empty". On a route that takes no body an empty JSON body
// is no body; routes with a body still refuse it, and every other body is parsed as before.
// @see openapi review 6

let t: TestServer;
beforeAll(async () => {
  t = await createTestServer();
});
afterAll(async () => {
  await t.close();
});

const JSON_TYPES = ["application/json", "application/json; charset=utf-8"];

async function sendCode(to: string): Promise<string> {
  const sent = await t.fastify.inject({
    method: "POST",
    url: "/v1/verifications",
    payload: { channel: "email", to, purpose: "sign_in" },
  });
  expect(sent.statusCode).toBe(201);
  return sent.json().id as string;
}

describe("an empty body under a JSON content type", () => {
  it.each(JSON_TYPES)("is no body on the cancel route (%s)", async (contentType) => {
    const id = await sendCode(`cancel-${contentType.length}@example.com`);
    const reply = await t.fastify.inject({
      method: "POST",
      url: `/v1/verifications/${id}/cancel`,
      headers: { "content-type": contentType },
      payload: "",
    });
    expect(reply.statusCode).toBe(200);
    expect(reply.json()).toEqual({ id, status: "canceled" });
  });

  it.each([
    ["/v1/verifications", "send"],
    ["/v1/verifications/check", "check"],
    ["/v1/tokens/redeem", "redeem"],
    ["/v1/captcha", "captcha"],
  ])("is still refused where a body is required: %s", async (url) => {
    const reply = await t.fastify.inject({
      method: "POST",
      url,
      headers: { "content-type": "application/json" },
      payload: "",
    });
    expect(reply.statusCode).toBe(400);
    expect(reply.json()).toMatchObject({
      code: "VALIDATION_FAILED",
      field: "body",
      detail: "The body must not be empty",
    });
  });

  it("leaves other bodies to the JSON parser as before", async () => {
    const id = await sendCode("cancel-json@example.com");
    const cancel = (payload: string) =>
      t.fastify.inject({
        method: "POST",
        url: `/v1/verifications/${id}/cancel`,
        headers: { "content-type": "application/json" },
        payload,
      });
    expect((await cancel("{")).json()).toMatchObject({ status: 400, detail: "The body is not valid JSON" });
    expect((await cancel("{}")).json()).toEqual({ id, status: "canceled" });
    const poisoned = await t.fastify.inject({
      method: "POST",
      url: "/v1/verifications/check",
      headers: { "content-type": "application/json" },
      payload: `{"id":"${id}","code":"123456","__proto__":{"x":1}}`,
    });
    expect(poisoned.json()).toMatchObject({
      status: 400,
      field: "body",
      detail: "The body must not hold a __proto__ or constructor.prototype key",
    });
  });
});
