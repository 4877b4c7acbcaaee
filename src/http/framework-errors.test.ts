import { gzipSync } from "node:zlib";
import type { InjectOptions } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestServer, type TestServer } from "../../test/harness.js";

/**
 * What Fastify itself refuses (a body it cannot read, a method it wants a Content-Type for) is
 * answered in the caller's face's shape and says what is wrong, on paths no route serves too.
 */
let t: TestServer;
beforeAll(async () => {
  t = await createTestServer();
});
afterAll(() => t?.close());

const json = { "content-type": "application/json" };
const IDAAS_DEVICE = {
  "x-operating-sys-version": "windows10.1.1",
  "x-device-fingerprint": "156aysdna213sc50",
  "x-agent": "Mozilla/5.0",
  "x-client-id": "default",
};
const SEND = { channel: "email", to: "framing@example.com", purpose: "sign_in" };

const send = (options: InjectOptions) => t.fastify.inject(options);

function expectProblem(reply: Awaited<ReturnType<typeof send>>, status: number, code: string) {
  expect(reply.statusCode, reply.body).toBe(status);
  expect(reply.headers["content-type"]).toMatch(/^application\/problem\+json/);
  expect(reply.headers["x-request-id"]).toEqual(expect.any(String));
  expect(reply.json()).toMatchObject({ status, code });
}

describe("a request no face's plugin serves", () => {
  // Regression: the root had no error handler, so these came back in Fastify's own shape
  // ({statusCode, code: "FST_ERR_…", error, message}). @see fuzz review 3
  it("is answered as an unknown route in problem+json, whatever its body", async () => {
    const cases: InjectOptions[] = [
      { method: "PATCH", url: "/v1/verifications", headers: json, payload: "{" },
      { method: "POST", url: "/healthz", headers: json, payload: JSON.stringify({ a: "x".repeat(20_000) }) },
      { method: "QUERY" as InjectOptions["method"], url: "/v1/verifications" },
      { method: "POST", url: "/nowhere", headers: json, payload: "" },
      { method: "POST", url: "/nowhere", headers: { ...json, "content-encoding": "gzip" }, payload: "{}" },
    ];
    for (const options of cases) {
      const reply = await send(options);
      expectProblem(reply, 404, "ROUTE_NOT_FOUND");
      expect(reply.json().detail).toBe(`No route ${options.method} ${options.url}`);
    }
  });

  // Regression: under a face's prefix a bad body on an unknown path was answered as a bad body
  // (CloudBase invalid_argument 4000, IDaaS PARAM.1001), as if the path existed. @see fuzz review 3
  it("is answered as an unknown route under a face's prefix too, in the face's shape", async () => {
    const cloudbase = await send({ method: "POST", url: "/auth/v1/nope", headers: json, payload: "{" });
    expect(cloudbase.statusCode, cloudbase.body).toBe(404);
    expect(cloudbase.json()).toMatchObject({ error: "not_found", error_code: 4040 });
    const idaas = await send({
      method: "POST",
      url: "/api/v2/sdk/nope",
      headers: { ...json, ...IDAAS_DEVICE },
      payload: "{",
    });
    expect(idaas.statusCode, idaas.body).toBe(404);
    expect(idaas.json()).toMatchObject({ error_code: "IDAAS.SDK.PARAM.1006" });
    // IDaaS checks its device headers before anything else, unknown paths too.
    const noDevice = await send({ method: "POST", url: "/api/v2/sdk/nope", headers: json, payload: "{" });
    expect(noDevice.json()).toMatchObject({ error_code: "IDAAS.SDK.PARAM.0001" });
  });
});

describe("a body Fastify refuses", () => {
  // Regression: every one of Fastify's refusals of a body was worded "The body is not valid JSON".
  // @see fuzz review 5
  it.for([
    [
      "a __proto__ key",
      { headers: json, payload: JSON.stringify(SEND).replace("{", '{"__proto__":{"x":1},') },
      "The body must not hold a __proto__ or constructor.prototype key",
      "body",
    ],
    [
      "a constructor.prototype key",
      { headers: json, payload: JSON.stringify(SEND).replace("{", '{"constructor":{"prototype":{"x":1}},') },
      "The body must not hold a __proto__ or constructor.prototype key",
      "body",
    ],
    [
      "a gzipped body",
      { headers: { ...json, "content-encoding": "gzip" }, payload: gzipSync(JSON.stringify(SEND)) },
      "Content-Encoding gzip is not supported: send the body uncompressed, without Content-Encoding",
      "content-encoding",
    ],
    [
      "a plain body said to be gzipped",
      { headers: { ...json, "content-encoding": "gzip" }, payload: JSON.stringify(SEND) },
      "Content-Encoding gzip is not supported: send the body uncompressed, without Content-Encoding",
      "content-encoding",
    ],
    [
      "a body compressed twice",
      { headers: { ...json, "content-encoding": "identity, BR" }, payload: JSON.stringify(SEND) },
      "Content-Encoding is not supported: send the body uncompressed, without Content-Encoding",
      "content-encoding",
    ],
    [
      "text/plain",
      { headers: { "content-type": "text/plain" }, payload: JSON.stringify(SEND) },
      "Content-Type must be application/json",
      "body",
    ],
    ["malformed JSON", { headers: json, payload: '{"channel":' }, "The body is not valid JSON", "body"],
    ["an empty body", { headers: json, payload: "" }, "The body must not be empty", "body"],
  ] as const)("says what is wrong with %s on a native route", async ([, options, detail, field]) => {
    const reply = await send({ method: "POST", url: "/v1/verifications", ...options });
    expectProblem(reply, 400, "VALIDATION_FAILED");
    expect(reply.json()).toMatchObject({ detail, field });
  });

  // Regression: any coding but identity was refused, where Java clients often send
  // `Content-Encoding: UTF-8` (Apache HttpClient's setContentEncoding) beside a plain body.
  it.each(["identity", "UTF-8", "x-\u00e9\u00e9"])(
    "still takes a plain body said to be of the %s coding, naming no compression",
    async (coding) => {
      const reply = await send({
        method: "POST",
        url: "/v1/verifications",
        headers: { ...json, "content-encoding": coding },
        payload: JSON.stringify({ ...SEND, to: `coding-${coding.length}@example.com` }),
      });
      expect(reply.statusCode, reply.body).toBe(201);
    },
  );

  it("is refused compressed on the 2022 SDK's captcha page form too, in CloudBase's shape", async () => {
    const reply = await send({
      method: "POST",
      url: "/auth/v1/captcha/page",
      headers: { "content-type": "application/x-www-form-urlencoded", "content-encoding": "gzip" },
      payload: gzipSync("token=cc_x&key=abcd&redirect_uri=http%3A%2F%2Flocalhost%3A3000%2Fcb"),
    });
    expect(reply.statusCode, reply.body).toBe(400);
    expect(reply.json()).toEqual({
      error: "invalid_argument",
      error_code: 4000,
      error_description:
        "Content-Encoding gzip is not supported: send the body uncompressed, without Content-Encoding",
    });
  });

  it("is worded as its face words it: IDaaS with its parameter error, Fresns with the text", async () => {
    const idaas = await send({
      method: "POST",
      url: "/api/v2/sdk/email/send",
      headers: { ...json, ...IDAAS_DEVICE, "content-encoding": "gzip" },
      payload: "{}",
    });
    expect(idaas.statusCode, idaas.body).toBe(400);
    expect(idaas.json()).toMatchObject({ error_code: "IDAAS.SDK.PARAM.1001" });
    const fresns = await send({
      method: "POST",
      url: "/api/v2/common/send-verify-code",
      headers: { "content-type": "text/plain" },
      payload: "{}",
    });
    expect(fresns.json()).toEqual({
      code: 30000,
      message: "Content-Type must be application/json",
      data: null,
    });
  });
});
