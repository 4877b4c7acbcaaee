import type { InjectOptions } from "fastify";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createTestServer, type TestServer } from "../../../test/harness.js";

/**
 * Issue 2 "Bad input": every malformed request gets a 4xx problem+json with a stable `code` and a
 * detail naming the field; never a 5xx, never a crash, never a half-written record.
 */

interface Row {
  name: string;
  method: "GET" | "POST";
  url: string;
  /** an object is sent as JSON; a string is sent raw as application/json */
  body?: unknown;
  headers?: Record<string, string>;
  status: number;
  code: string;
  /** the field `field` names (and `detail` mentions); absent where no field is at fault */
  field?: string;
  /** when the detail does not spell the field name itself */
  detail?: RegExp;
}

const SEND = "/v1/verifications";
const CHECK = "/v1/verifications/check";
const REDEEM = "/v1/tokens/redeem";
const OK_SEND = { channel: "email", to: "ann@example.com", purpose: "sign_in" };
const LONG_ID = "x".repeat(65);
const BIG = "x".repeat(17 * 1024);

const invalid = (name: string, method: Row["method"], url: string, body: unknown, field: string): Row => ({
  name,
  method,
  url,
  body,
  status: 400,
  code: "VALIDATION_FAILED",
  field,
});

const ROWS: Row[] = [
  // --- POST /v1/verifications: the body as a whole
  invalid("send: malformed JSON", "POST", SEND, '{"channel": "email",', "body"),
  invalid("send: an empty body", "POST", SEND, "", "body"),
  invalid("send: a JSON array", "POST", SEND, "[]", "body"),
  invalid("send: JSON null", "POST", SEND, "null", "body"),
  invalid("send: a JSON string", "POST", SEND, '"hello"', "body"),
  {
    name: "send: a text/plain body",
    method: "POST",
    url: SEND,
    body: "channel=email",
    headers: { "content-type": "text/plain" },
    status: 400,
    code: "VALIDATION_FAILED",
    field: "body",
    // Regression: Fastify's text/plain parser handed the route a string ("body must be of type
    // object"). @see fuzz review 5
    detail: /^Content-Type must be application\/json$/,
  },
  {
    name: "send: a form-encoded body",
    method: "POST",
    url: SEND,
    body: "channel=email&to=a%40b.co",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    status: 400,
    code: "VALIDATION_FAILED",
    field: "body",
    detail: /Content-Type must be application\/json/,
  },
  {
    name: "send: a body over 16 KiB",
    method: "POST",
    url: SEND,
    body: { ...OK_SEND, device_id: BIG },
    status: 413,
    code: "BODY_TOO_LARGE",
    field: "body",
    detail: /16 KiB/,
  },
  invalid("send: an unknown field", "POST", SEND, { ...OK_SEND, foo: 1 }, "foo"),
  // --- channel
  invalid("send: channel missing", "POST", SEND, { to: "ann@example.com", purpose: "sign_in" }, "channel"),
  invalid("send: channel unknown", "POST", SEND, { ...OK_SEND, channel: "fax" }, "channel"),
  invalid("send: channel upper-case", "POST", SEND, { ...OK_SEND, channel: "EMAIL" }, "channel"),
  invalid("send: channel a number", "POST", SEND, { ...OK_SEND, channel: 1 }, "channel"),
  invalid("send: channel null", "POST", SEND, { ...OK_SEND, channel: null }, "channel"),
  // --- to
  invalid("send: to a number", "POST", SEND, { ...OK_SEND, to: 13800138000 }, "to"),
  invalid("send: to an array", "POST", SEND, { ...OK_SEND, to: ["ann@example.com"] }, "to"),
  invalid("send: to empty", "POST", SEND, { ...OK_SEND, to: "" }, "to"),
  invalid("send: to too long", "POST", SEND, { ...OK_SEND, to: `${"a".repeat(250)}@example.com` }, "to"),
  invalid("send: to not an email", "POST", SEND, { ...OK_SEND, to: "ann.example.com" }, "to"),
  invalid("send: to an email without a domain dot", "POST", SEND, { ...OK_SEND, to: "ann@localhost" }, "to"),
  invalid("send: to a phone on the email channel", "POST", SEND, { ...OK_SEND, to: "+8613800138000" }, "to"),
  invalid("send: to too short a phone", "POST", SEND, { ...OK_SEND, channel: "sms", to: "12345" }, "to"),
  invalid("send: to letters on sms", "POST", SEND, { ...OK_SEND, channel: "sms", to: "call me" }, "to"),
  invalid(
    "send: to an email on sms",
    "POST",
    SEND,
    { ...OK_SEND, channel: "sms", to: "ann@example.com" },
    "to",
  ),
  invalid(
    "send: to not a number of its country",
    "POST",
    SEND,
    { ...OK_SEND, channel: "sms", to: "+86 12345678901" },
    "to",
  ),
  invalid(
    "send: to a national number of another country",
    "POST",
    SEND,
    { ...OK_SEND, channel: "sms", to: "13800138000", country: "GB" },
    "to",
  ),
  {
    name: "send: to missing (own contact) without a logged-in account",
    method: "POST",
    url: SEND,
    body: { channel: "email", purpose: "sign_in" },
    status: 409,
    code: "LOGIN_REQUIRED",
  },
  // --- purpose
  invalid("send: purpose missing", "POST", SEND, { channel: "email", to: "ann@example.com" }, "purpose"),
  invalid("send: purpose unknown", "POST", SEND, { ...OK_SEND, purpose: "login" }, "purpose"),
  invalid("send: purpose a number", "POST", SEND, { ...OK_SEND, purpose: 7 }, "purpose"),
  // --- locale
  invalid("send: locale with a space", "POST", SEND, { ...OK_SEND, locale: "en US" }, "locale"),
  invalid("send: locale too short", "POST", SEND, { ...OK_SEND, locale: "e" }, "locale"),
  invalid("send: locale too long", "POST", SEND, { ...OK_SEND, locale: "e".repeat(36) }, "locale"),
  invalid("send: locale a number", "POST", SEND, { ...OK_SEND, locale: 1 }, "locale"),
  // --- country
  invalid(
    "send: country of three letters",
    "POST",
    SEND,
    { ...OK_SEND, channel: "sms", to: "13800138000", country: "CHN" },
    "country",
  ),
  invalid(
    "send: country with a digit",
    "POST",
    SEND,
    { ...OK_SEND, channel: "sms", to: "13800138000", country: "C1" },
    "country",
  ),
  invalid(
    "send: country a number",
    "POST",
    SEND,
    { ...OK_SEND, channel: "sms", to: "13800138000", country: 86 },
    "country",
  ),
  // --- target
  invalid("send: target unknown", "POST", SEND, { ...OK_SEND, target: "USER" }, "target"),
  invalid("send: target a boolean", "POST", SEND, { ...OK_SEND, target: true }, "target"),
  // --- account_id
  invalid("send: account_id empty", "POST", SEND, { ...OK_SEND, account_id: "" }, "account_id"),
  invalid("send: account_id a number", "POST", SEND, { ...OK_SEND, account_id: 42 }, "account_id"),
  invalid(
    "send: account_id too long",
    "POST",
    SEND,
    { ...OK_SEND, account_id: "a".repeat(129) },
    "account_id",
  ),
  // --- client_ip
  invalid("send: client_ip a number", "POST", SEND, { ...OK_SEND, client_ip: 2130706433 }, "client_ip"),
  invalid("send: client_ip too short", "POST", SEND, { ...OK_SEND, client_ip: "1" }, "client_ip"),
  invalid("send: client_ip too long", "POST", SEND, { ...OK_SEND, client_ip: "1".repeat(46) }, "client_ip"),
  ...["999.999.999.999", "1.2.3.4:80", "1.2.3.4/24", "localhost", "ab"].map((address) =>
    invalid(`send: client_ip ${address}`, "POST", SEND, { ...OK_SEND, client_ip: address }, "client_ip"),
  ),
  // --- device_id
  invalid("send: device_id empty", "POST", SEND, { ...OK_SEND, device_id: "" }, "device_id"),
  invalid("send: device_id an object", "POST", SEND, { ...OK_SEND, device_id: {} }, "device_id"),
  invalid("send: device_id too long", "POST", SEND, { ...OK_SEND, device_id: "d".repeat(201) }, "device_id"),
  // --- Idempotency-Key
  ...[
    ["empty", ""],
    ["with a space", "key one"],
    ["non-ASCII", "clé"],
    ["longer than 255", "k".repeat(256)],
  ].map(
    ([what, key]): Row => ({
      name: `send: Idempotency-Key ${what}`,
      method: "POST",
      url: SEND,
      body: OK_SEND,
      headers: { "idempotency-key": key as string },
      status: 400,
      code: "VALIDATION_FAILED",
      field: "Idempotency-Key",
    }),
  ),

  // --- POST /v1/verifications/check
  invalid("check: malformed JSON", "POST", CHECK, "{", "body"),
  invalid("check: an empty body", "POST", CHECK, "", "body"),
  invalid("check: an unknown field", "POST", CHECK, { id: "vf_x", code: "123456", to: "a" }, "to"),
  invalid("check: id missing", "POST", CHECK, { code: "123456" }, "id"),
  invalid("check: id a number", "POST", CHECK, { id: 1, code: "123456" }, "id"),
  invalid("check: id empty", "POST", CHECK, { id: "", code: "123456" }, "id"),
  invalid("check: id too long", "POST", CHECK, { id: LONG_ID, code: "123456" }, "id"),
  invalid("check: code missing", "POST", CHECK, { id: "vf_x" }, "code"),
  invalid("check: code a number", "POST", CHECK, { id: "vf_x", code: 123456 }, "code"),
  invalid("check: code empty", "POST", CHECK, { id: "vf_x", code: "" }, "code"),
  invalid("check: code too short", "POST", CHECK, { id: "vf_x", code: "12345" }, "code"),
  invalid("check: code too long", "POST", CHECK, { id: "vf_x", code: "1234567" }, "code"),
  invalid("check: code with a letter", "POST", CHECK, { id: "vf_x", code: "12345a" }, "code"),
  invalid("check: code with a space", "POST", CHECK, { id: "vf_x", code: "123 45" }, "code"),
  invalid("check: code of full-width digits", "POST", CHECK, { id: "vf_x", code: "１２３４５６" }, "code"),
  invalid("check: code far too long", "POST", CHECK, { id: "vf_x", code: "1".repeat(33) }, "code"),
  {
    name: "check: a body over 16 KiB",
    method: "POST",
    url: CHECK,
    body: { id: "vf_x", code: BIG },
    status: 413,
    code: "BODY_TOO_LARGE",
    field: "body",
    detail: /16 KiB/,
  },
  {
    name: "check: an unknown verification id",
    method: "POST",
    url: CHECK,
    body: { id: "vf_AAAAAAAAAAAAAAAAAAAAAA", code: "123456" },
    status: 404,
    code: "VERIFICATION_NOT_FOUND",
    field: "id",
    detail: /Unknown verification/,
  },

  // --- GET /v1/verifications/{id}
  {
    name: "get: an unknown verification id",
    method: "GET",
    url: "/v1/verifications/vf_AAAAAAAAAAAAAAAAAAAAAA",
    status: 404,
    code: "VERIFICATION_NOT_FOUND",
    field: "id",
    detail: /Unknown verification/,
  },
  invalid("get: id too long", "GET", `/v1/verifications/${LONG_ID}`, undefined, "id"),
  // refused by the router before any handler: answered like an unknown route, not in Fastify's shape
  invalid("get: a path that does not decode", "GET", "/v1/verifications/%zz", undefined, "path"),
  invalid(
    "get: an id past the router's limit",
    "GET",
    `/v1/verifications/${"x".repeat(600)}`,
    undefined,
    "path",
  ),

  // --- POST /v1/verifications/{id}/cancel
  {
    name: "cancel: an unknown verification id",
    method: "POST",
    url: "/v1/verifications/vf_AAAAAAAAAAAAAAAAAAAAAA/cancel",
    status: 404,
    code: "VERIFICATION_NOT_FOUND",
    field: "id",
    detail: /Unknown verification/,
  },
  invalid("cancel: id too long", "POST", `/v1/verifications/${LONG_ID}/cancel`, undefined, "id"),

  // --- POST /v1/tokens/redeem
  invalid("redeem: malformed JSON", "POST", REDEEM, "{token", "body"),
  invalid("redeem: an unknown field", "POST", REDEEM, { token: "vt_x", purpose: "sign_in" }, "purpose"),
  invalid("redeem: token missing", "POST", REDEEM, {}, "token"),
  invalid("redeem: token a number", "POST", REDEEM, { token: 1 }, "token"),
  invalid("redeem: token empty", "POST", REDEEM, { token: "" }, "token"),
  invalid("redeem: token too long", "POST", REDEEM, { token: "t".repeat(129) }, "token"),
  invalid("redeem: purposes a string", "POST", REDEEM, { token: "vt_x", purposes: "sign_in" }, "purposes"),
  invalid("redeem: purposes empty", "POST", REDEEM, { token: "vt_x", purposes: [] }, "purposes"),
  invalid(
    "redeem: purposes with an unknown purpose",
    "POST",
    REDEEM,
    { token: "vt_x", purposes: ["login"] },
    "purposes.0",
  ),
  {
    name: "redeem: an unknown token",
    method: "POST",
    url: REDEEM,
    body: { token: "vt_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" },
    status: 404,
    code: "TOKEN_INVALID",
    field: "token",
    detail: /token/,
  },

  // --- GET /v1/dev/inbox
  invalid("dev inbox: to missing", "GET", "/v1/dev/inbox", undefined, "to"),
  invalid("dev inbox: to empty", "GET", "/v1/dev/inbox?to=", undefined, "to"),
  invalid("dev inbox: to not an address", "GET", "/v1/dev/inbox?to=nobody", undefined, "to"),
  invalid("dev inbox: to a malformed email", "GET", "/v1/dev/inbox?to=ann%40localhost", undefined, "to"),
  invalid("dev inbox: to too long", "GET", `/v1/dev/inbox?to=${"1".repeat(255)}`, undefined, "to"),
];

function request(row: Pick<Row, "method" | "url" | "body" | "headers">): InjectOptions {
  const options: InjectOptions = { method: row.method, url: row.url, headers: { ...row.headers } };
  if (typeof row.body === "string") {
    options.payload = row.body;
    options.headers = { "content-type": "application/json", ...row.headers };
  } else if (row.body !== undefined) {
    options.payload = row.body as object;
  }
  return options;
}

function written(t: TestServer): { codes: number; outbox: number; idempotency: number } {
  const count = (table: string) =>
    (
      t.server.backend.db.prepare(`SELECT count(*) AS n FROM ${table}`).get() as {
        n: number;
      }
    ).n;
  return { codes: count("codes"), outbox: count("outbox"), idempotency: count("idempotency") };
}

/** The RFC 9457 shape every refusal of the native API has. */
function expectProblem(
  reply: { statusCode: number; headers: Record<string, unknown>; json: () => unknown },
  status: number,
  code: string,
) {
  expect(reply.statusCode).toBe(status);
  expect(reply.headers["content-type"]).toMatch(/^application\/problem\+json/);
  const body = reply.json() as Record<string, unknown>;
  expect(body).toMatchObject({
    type: `urn:verifyd:error:${code.toLowerCase().replaceAll("_", "-")}`,
    title: expect.any(String),
    status,
    code,
    detail: expect.any(String),
  });
  return body;
}

describe("bad input on every native route (dev mode)", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await createTestServer();
  });
  afterAll(async () => {
    await t.close();
  });

  it.each(ROWS)("$name -> $status $code", async (row) => {
    const reply = await t.fastify.inject(request(row));
    const body = expectProblem(reply, row.status, row.code);
    if (row.field === undefined) {
      expect(body.field).toBeUndefined();
    } else {
      expect(body.field).toBe(row.field);
      expect(body.detail).toMatch(row.detail ?? row.field);
    }
    expect(written(t)).toEqual({ codes: 0, outbox: 0, idempotency: 0 });
  });
});

describe("bad input against a live verification", () => {
  let t: TestServer;
  afterEach(async () => {
    await t.close();
  });

  it("refuses a code of the wrong length or alphabet naming code, without spending an attempt", async () => {
    t = await createTestServer();
    const sent = await t.fastify.inject({ method: "POST", url: SEND, payload: OK_SEND });
    const { id } = sent.json();
    for (const code of ["12345", "1234567", "abcdef", "12 456", "-12345", "1e5000"]) {
      const reply = await t.fastify.inject({ method: "POST", url: CHECK, payload: { id, code } });
      const body = expectProblem(reply, 400, "VALIDATION_FAILED");
      expect(body.field).toBe("code");
      expect(body.detail).toBe("code must be 6 digits");
    }
    const view = await t.fastify.inject({ method: "GET", url: `/v1/verifications/${id}` });
    expect(view.json().attempts_remaining).toBe(5);
  });

  it("asks for the app's own code length", async () => {
    t = await createTestServer({ apps: [{ id: "default", policy: { codeLength: 8 } }] });
    const { id } = (await t.fastify.inject({ method: "POST", url: SEND, payload: OK_SEND })).json();
    const reply = await t.fastify.inject({ method: "POST", url: CHECK, payload: { id, code: "123456" } });
    expect(expectProblem(reply, 400, "VALIDATION_FAILED").detail).toBe("code must be 8 digits");
  });

  it("writes nothing for a send whose Idempotency-Key is malformed, and nothing twice for a reused one", async () => {
    t = await createTestServer();
    const bad = await t.fastify.inject({
      method: "POST",
      url: SEND,
      payload: OK_SEND,
      headers: { "idempotency-key": "" },
    });
    expectProblem(bad, 400, "VALIDATION_FAILED");
    expect(written(t)).toEqual({ codes: 0, outbox: 0, idempotency: 0 });
    const headers = { "idempotency-key": "order-42" };
    const first = await t.fastify.inject({ method: "POST", url: SEND, payload: OK_SEND, headers });
    const reused = await t.fastify.inject({
      method: "POST",
      url: SEND,
      payload: { ...OK_SEND, to: "bob@example.com" },
      headers,
    });
    expect(first.statusCode).toBe(201);
    expect(expectProblem(reused, 400, "VALIDATION_FAILED").field).toBe("Idempotency-Key");
    expect(written(t)).toEqual({ codes: 1, outbox: 1, idempotency: 1 });
  });
});

describe("authentication in production mode", () => {
  const API_KEY = "vk_test_shop_0123456789abcdef";
  let t: TestServer;
  beforeAll(async () => {
    t = await createTestServer({
      env: { VERIFYD_MODE: "production", VERIFYD_SECRET: "production-secret-0123456789" },
      apps: [
        { id: "shop", name: "Shop", apiKeys: [API_KEY] },
        { id: "closed", apiKeys: ["vk_test_closed_0123456789abcdef"], disabled: true },
      ],
    });
  });
  afterAll(async () => {
    await t.close();
  });

  const routes: Pick<Row, "method" | "url" | "body">[] = [
    { method: "POST", url: SEND, body: OK_SEND },
    { method: "POST", url: CHECK, body: { id: "vf_x", code: "123456" } },
    { method: "GET", url: "/v1/verifications/vf_x" },
    { method: "POST", url: "/v1/verifications/vf_x/cancel" },
    { method: "POST", url: REDEEM, body: { token: "vt_x" } },
  ];

  const credentials: { name: string; headers: Record<string, string>; status: number; code: string }[] = [
    { name: "no Authorization", headers: {}, status: 401, code: "UNAUTHENTICATED" },
    {
      name: "an unknown key",
      headers: { authorization: "Bearer vk_nope" },
      status: 401,
      code: "UNAUTHENTICATED",
    },
    {
      name: "a Basic credential",
      headers: { authorization: `Basic ${API_KEY}` },
      status: 401,
      code: "UNAUTHENTICATED",
    },
    { name: "a bare key", headers: { authorization: API_KEY }, status: 401, code: "UNAUTHENTICATED" },
    { name: "an empty Bearer", headers: { authorization: "Bearer " }, status: 401, code: "UNAUTHENTICATED" },
    {
      name: "a key with trailing junk",
      headers: { authorization: `Bearer ${API_KEY} x` },
      status: 401,
      code: "UNAUTHENTICATED",
    },
    {
      name: "a disabled app's key",
      headers: { authorization: "Bearer vk_test_closed_0123456789abcdef" },
      status: 403,
      code: "APP_DISABLED",
    },
  ];

  for (const route of routes) {
    it.each(credentials)(`${route.method} ${route.url} with $name -> $status $code`, async (credential) => {
      const reply = await t.fastify.inject(request({ ...route, headers: credential.headers }));
      const body = expectProblem(reply, credential.status, credential.code);
      if (credential.status === 401) expect(body.detail).toMatch(/Authorization|API key/);
      expect(written(t)).toEqual({ codes: 0, outbox: 0, idempotency: 0 });
    });
  }

  it("accepts the app's key, case-insensitively for the scheme", async () => {
    const reply = await t.fastify.inject({
      method: "GET",
      url: "/v1/verifications/vf_AAAAAAAAAAAAAAAAAAAAAA",
      headers: { authorization: `bearer ${API_KEY}` },
    });
    expectProblem(reply, 404, "VERIFICATION_NOT_FOUND");
  });

  it("serves no dev API", async () => {
    const reply = await t.fastify.inject({ method: "GET", url: "/v1/dev/inbox?to=ann%40example.com" });
    expect(reply.statusCode).toBe(404);
  });
});
