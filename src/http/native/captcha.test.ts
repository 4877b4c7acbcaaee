/**
 * The native captcha endpoints (`POST /v1/captcha`, `POST /v1/captcha/verify`), the dev API's
 * `GET /v1/dev/captcha/{token}` and the `X-Captcha-Token` header, grouped by status. Bad input is
 * always a 4xx problem+json, never a 5xx (issue 3, "Bad input"; `@see issue 3`).
 */
import type { LightMyRequestResponse } from "fastify";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createTestServer, type TestServer, type TestServerOptions } from "../../../test/harness.js";

const SHOP = { id: "shop", apiKeys: ["shop-api-key-0123456789abcdef"] };

// One dev-mode server serves every case that needs no other configuration: each case works on
// challenges of its own, and the clock only ever moves forward.
let shared: TestServer;
let own: TestServer | undefined;
let t: TestServer;
beforeAll(async () => {
  shared = await createTestServer({ apps: [SHOP] });
});
afterAll(async () => {
  await shared.close();
});
beforeEach(() => {
  t = shared;
  // Every test here comes from 127.0.0.1: a fresh 10-minute window keeps the per-IP challenge
  // and wrong-answer limits of one test from reaching into the next.
  shared.clock.advanceSeconds(601);
});
afterEach(async () => {
  await own?.close();
  own = undefined;
});

const SHOP_KEY = SHOP.apiKeys[0] as string;
const PRODUCTION = { VERIFYD_MODE: "production", VERIFYD_SECRET: "production-secret-0123456789" };

async function open(options: TestServerOptions): Promise<TestServer> {
  own = await createTestServer(options);
  return own;
}

async function challenge(type: "image" | "slider" = "image", headers: Record<string, string> = {}) {
  const response = await t.fastify.inject({ method: "POST", url: "/v1/captcha", headers, payload: { type } });
  expect(response.statusCode).toBe(200);
  return response.json() as { token: string; type: string; expires_in: number };
}

async function devAnswer(token: string): Promise<string | { x: number }> {
  const response = await t.fastify.inject({ method: "GET", url: `/v1/dev/captcha/${token}` });
  expect(response.statusCode).toBe(200);
  return response.json().answer;
}

function verify(payload: unknown, headers: Record<string, string> = {}): Promise<LightMyRequestResponse> {
  return t.fastify.inject({
    method: "POST",
    url: "/v1/captcha/verify",
    headers: { "content-type": "application/json", ...headers },
    payload: typeof payload === "string" ? payload : JSON.stringify(payload),
  });
}

function expectProblem(response: LightMyRequestResponse, status: number, code: string, field?: string) {
  expect(response.statusCode).toBe(status);
  expect(response.headers["content-type"]).toMatch(/^application\/problem\+json/);
  const body = response.json();
  expect(body).toMatchObject({ status, code, type: expect.stringMatching(/^urn:verifyd:error:/) });
  expect(body.detail).toEqual(expect.any(String));
  if (field !== undefined) expect(body.field).toBe(field);
}

describe("200", () => {
  it("POST /v1/captcha {type: image} returns a GIF data URI, never SVG source or the answer", async () => {
    const response = await t.fastify.inject({
      method: "POST",
      url: "/v1/captcha",
      payload: { type: "image" },
    });
    expect(response.statusCode).toBe(200);
    const body = response.json();
    expect(Object.keys(body).sort()).toEqual(["expires_in", "image", "token", "type"]);
    expect(body).toMatchObject({ type: "image", expires_in: 300 });
    expect(body.token).toMatch(/^cc_[A-Za-z0-9_-]{22,}$/);
    expect(body.image).toMatch(/^data:image\/gif;base64,[A-Za-z0-9+/]+=*$/);
    const image = Buffer.from(body.image.split(",")[1], "base64");
    expect(image.subarray(0, 6).toString("latin1")).toBe("GIF89a");
    const answer = await devAnswer(body.token);
    expect(answer).toMatch(/^[A-Z2-9]{4,6}$/);
    for (const giveaway of ["<svg", "<path", answer])
      expect(image.toString("latin1")).not.toContain(giveaway);
  });

  it("POST /v1/captcha {type: slider} returns the two PNGs and the piece's row, not its x", async () => {
    const response = await t.fastify.inject({
      method: "POST",
      url: "/v1/captcha",
      payload: { type: "slider" },
    });
    expect(response.statusCode).toBe(200);
    const body = response.json();
    expect(Object.keys(body).sort()).toEqual([
      "background",
      "expires_in",
      "height",
      "piece",
      "token",
      "type",
      "width",
      "y",
    ]);
    expect(body).toMatchObject({ type: "slider", expires_in: 300, width: 310, height: 155 });
    expect(body.background).toMatch(/^data:image\/png;base64,/);
    expect(body.piece).toMatch(/^data:image\/png;base64,/);
    expect(await devAnswer(body.token)).toEqual({ x: expect.any(Number) });
  });

  it("accepts an image answer in any case and with stray spaces", async () => {
    const { token } = await challenge("image");
    const answer = (await devAnswer(token)) as string;
    const response = await verify({ token, answer: ` ${answer.toLowerCase()} ` });
    expect(response.statusCode).toBe(200);
    const body = response.json();
    expect(Object.keys(body).sort()).toEqual(["captcha_token", "expires_in"]);
    expect(body.captcha_token).toMatch(/^cp_[A-Za-z0-9_-]{22,}$/);
    expect(body.expires_in).toBe(600);
  });

  it.each([
    ["a number 5 px right", (x: number) => x + 5],
    ["a number 5 px left", (x: number) => x - 5],
    ["a string", (x: number) => String(x)],
    ["a fractional number that rounds within 5 px", (x: number) => x + 5.4],
    ["AJ-Captcha point JSON", (x: number) => JSON.stringify({ x: x + 3, y: 5 })],
    // what a widget scaling the drag to the background yields (@see issue 3)
    ["a float of full precision", (x: number) => x + 2 / 7],
    ["a string of a float of full precision", (x: number) => String(x - 2 / 7)],
  ])("accepts a slider answer given as %s", async (_name, answerOf) => {
    const { token } = await challenge("slider");
    const { x } = (await devAnswer(token)) as { x: number };
    expect((await verify({ token, answer: answerOf(x) })).statusCode).toBe(200);
  });

  it("accepts the right answer on the last of three tries, and within 300 s", async () => {
    const { token } = await challenge("image");
    const answer = await devAnswer(token);
    t.clock.advanceSeconds(299);
    expectProblem(await verify({ token, answer: "????" }), 400, "CAPTCHA_FAILED");
    expectProblem(await verify({ token, answer: "WRONG" }), 400, "CAPTCHA_FAILED");
    expect((await verify({ token, answer })).statusCode).toBe(200);
  });

  it("an API-key caller gets challenges of its own app", async () => {
    const auth = { authorization: `Bearer ${SHOP_KEY}` };
    const { token } = await challenge("image", auth);
    expect((await verify({ token, answer: await devAnswer(token) }, auth)).statusCode).toBe(200);
  });
});

describe("400", () => {
  it.each([
    ["6 px right", (x: number) => x + 6],
    ["6 px left", (x: number) => x - 6],
    ["far off", (x: number) => (x + 150) % 300],
  ])("refuses a slider answer %s", async (_name, answerOf) => {
    const { token } = await challenge("slider");
    const { x } = (await devAnswer(token)) as { x: number };
    expectProblem(await verify({ token, answer: answerOf(x) }), 400, "CAPTCHA_FAILED");
  });

  it("kills a challenge after three wrong tries, even for the right answer afterwards", async () => {
    const { token } = await challenge("image");
    const answer = await devAnswer(token);
    for (let n = 0; n < 3; n++)
      expectProblem(await verify({ token, answer: "ZZZZZZ" }), 400, "CAPTCHA_FAILED");
    const late = await verify({ token, answer });
    expectProblem(late, 400, "CAPTCHA_FAILED");
    expect(late.json().detail).toMatch(/unknown, expired or out of tries/);
  });

  it("refuses an expired challenge (300 s)", async () => {
    const { token } = await challenge("slider");
    const { x } = (await devAnswer(token)) as { x: number };
    t.clock.advanceSeconds(300);
    expectProblem(await verify({ token, answer: x }), 400, "CAPTCHA_FAILED");
    // the dev API forgets it as well
    expectProblem(
      await t.fastify.inject({ method: "GET", url: `/v1/dev/captcha/${token}` }),
      400,
      "CAPTCHA_FAILED",
    );
  });

  it("refuses an unknown challenge token and a solved one", async () => {
    expectProblem(await verify({ token: "cc_unknown", answer: "ABCD" }), 400, "CAPTCHA_FAILED");
    const { token } = await challenge("image");
    const answer = await devAnswer(token);
    expect((await verify({ token, answer })).statusCode).toBe(200);
    expectProblem(await verify({ token, answer }), 400, "CAPTCHA_FAILED");
  });

  it("refuses a challenge of another app", async () => {
    const { token } = await challenge("image");
    const answer = await devAnswer(token);
    expectProblem(
      await verify({ token, answer }, { authorization: `Bearer ${SHOP_KEY}` }),
      400,
      "CAPTCHA_FAILED",
    );
    // and that refusal spent none of the owner's tries
    expect((await verify({ token, answer })).statusCode).toBe(200);
  });

  it("refuses an answer of the other challenge type as wrong (spending a try)", async () => {
    const slider = await challenge("slider");
    expectProblem(await verify({ token: slider.token, answer: "AB3K" }), 400, "CAPTCHA_FAILED");
    expectProblem(await verify({ token: slider.token, answer: '{"x":"ten"}' }), 400, "CAPTCHA_FAILED");
    expectProblem(
      await verify({ token: slider.token, answer: "bm90IGNpcGhlcnRleHQ=" }),
      400,
      "CAPTCHA_FAILED",
    );
    const { x } = (await devAnswer(slider.token)) as { x: number };
    expectProblem(await verify({ token: slider.token, answer: x }), 400, "CAPTCHA_FAILED");

    const image = await challenge("image");
    expectProblem(await verify({ token: image.token, answer: 4321 }), 400, "CAPTCHA_FAILED");
  });

  it.each([
    ["an object", { x: 120 }],
    ["an array", ["AB3K"]],
    ["a boolean", true],
    ["null", null],
    ["an empty string", ""],
    ["a negative number", -1],
    ["an absurd number", 1e9],
    ["a 2049-character string", "A".repeat(2049)],
    ["a 15 KiB string", "A".repeat(15 * 1024)],
  ])("refuses an answer that is %s with VALIDATION_FAILED naming answer", async (_name, answer) => {
    const { token } = await challenge("image");
    expectProblem(await verify({ token, answer }), 400, "VALIDATION_FAILED", "answer");
    // a malformed request spends no try: the right answer still passes afterwards
    expect((await verify({ token, answer: await devAnswer(token) })).statusCode).toBe(200);
  });

  it("refuses a 2048-character answer as wrong without a 5xx", async () => {
    const slider = await challenge("slider");
    expectProblem(await verify({ token: slider.token, answer: "A".repeat(2048) }), 400, "CAPTCHA_FAILED");
    const json = `{"x":${"1".repeat(2040)}}`;
    expectProblem(await verify({ token: slider.token, answer: json }), 400, "CAPTCHA_FAILED");
  });

  it.each([
    ["a missing token", { answer: "AB3K" }, "token"],
    ["an empty token", { token: "", answer: "AB3K" }, "token"],
    ["a 129-character token", { token: `cc_${"a".repeat(126)}`, answer: "AB3K" }, "token"],
    ["a numeric token", { token: 42, answer: "AB3K" }, "token"],
    ["a missing answer", { token: "cc_x" }, "answer"],
    ["an unknown field", { token: "cc_x", answer: "AB3K", x: 1 }, "x"],
    ["an invalid recipient to bind to", { token: "cc_x", answer: "AB3K", to: "nobody" }, "to"],
    [
      "a recipient of 255 characters",
      { token: "cc_x", answer: "AB3K", to: `${"a".repeat(243)}@example.com` },
      "to",
    ],
  ])("refuses %s with VALIDATION_FAILED", async (_name, payload, field) => {
    expectProblem(await verify(payload), 400, "VALIDATION_FAILED", field);
  });

  it("binds nothing and spends no try when the recipient to bind to is invalid", async () => {
    const { token } = await challenge("image");
    const answer = await devAnswer(token);
    for (let n = 0; n < 3; n++)
      expectProblem(await verify({ token, answer, to: "+1 555" }), 400, "VALIDATION_FAILED");
    expect((await verify({ token, answer, to: "+8613800138000" })).statusCode).toBe(200);
  });

  it.each([
    ["an unknown type", { type: "audio" }, "type"],
    ["no type", {}, "type"],
    ["an extra field", { type: "image", size: 4 }, "size"],
  ])("POST /v1/captcha refuses %s", async (_name, payload, field) => {
    const response = await t.fastify.inject({ method: "POST", url: "/v1/captcha", payload });
    expectProblem(response, 400, "VALIDATION_FAILED", field);
  });

  it.each([
    ["a body that is not JSON", "{token:"],
    ["a JSON array", "[]"],
    ["a JSON string", '"cc_x"'],
  ])("POST /v1/captcha/verify refuses %s", async (_name, raw) => {
    expectProblem(await verify(raw), 400, "VALIDATION_FAILED");
  });

  it.each([
    ["a forged token", "cp_forged"],
    ["a challenge token", "cc_not_a_pass"],
    ["an empty token", ""],
    ["a 300-character token", "x".repeat(300)],
    ["an 8 KiB token", "x".repeat(8 * 1024)],
  ])("refuses %s in X-Captcha-Token on a send with CAPTCHA_FAILED", async (_name, pass) => {
    const response = await t.fastify.inject({
      method: "POST",
      url: "/v1/verifications",
      headers: { "x-captcha-token": pass },
      payload: { channel: "email", to: "ann@example.com", purpose: "sign_in" },
    });
    expectProblem(response, 400, "CAPTCHA_FAILED");
  });

  it("dev API: refuses an unknown and an overlong challenge token", async () => {
    expectProblem(
      await t.fastify.inject({ method: "GET", url: "/v1/dev/captcha/cc_unknown" }),
      400,
      "CAPTCHA_FAILED",
      "token",
    );
    expectProblem(
      await t.fastify.inject({ method: "GET", url: `/v1/dev/captcha/cc_${"a".repeat(97)}` }),
      400,
      "CAPTCHA_FAILED",
    );
    // Over the schema's 128 characters: refused by the schema, in problem+json, naming the field.
    expectProblem(
      await t.fastify.inject({ method: "GET", url: `/v1/dev/captcha/${"a".repeat(129)}` }),
      400,
      "VALIDATION_FAILED",
      "token",
    );
    for (const junk of ["%ZZ", "%00", "..%2F..%2Fetc", "%F0%9F%99%82", "cc_%0A"]) {
      const response = await t.fastify.inject({ method: "GET", url: `/v1/dev/captcha/${junk}` });
      expect(response.statusCode, junk).toBeGreaterThanOrEqual(400);
      expect(response.statusCode, junk).toBeLessThan(500);
    }
  });

  it("refuses a body that is not JSON", async () => {
    const response = await t.fastify.inject({
      method: "POST",
      url: "/v1/captcha",
      headers: { "content-type": "text/plain" },
      payload: "image",
    });
    expectProblem(response, 400, "VALIDATION_FAILED", "body");
  });

  it("never answers a 5xx to junk", async () => {
    const image = await challenge("image");
    const slider = await challenge("slider");
    const junk: unknown[] = [
      "\u0000",
      "\ud800",
      "🙂🙂🙂🙂",
      "   ",
      "NaN",
      "Infinity",
      "-0",
      "1e309",
      "0x10",
      '{"x":1e309,"y":5}',
      '{"x":-1,"y":5}',
      '{"x":null}',
      '{"__proto__":{"x":1}}',
      "[1,2]",
      "=".repeat(64),
      "A".repeat(2048),
      0,
      0.5,
      10_000,
    ];
    for (const token of [image.token, slider.token, "cc_unknown"]) {
      for (const answer of junk) {
        const response = await verify({ token, answer });
        expect(response.statusCode, `${token} ${JSON.stringify(answer)}`).toBeGreaterThanOrEqual(400);
        expect(response.statusCode, `${token} ${JSON.stringify(answer)}`).toBeLessThan(500);
      }
    }
  });
});

describe("401, 404 and 413", () => {
  it("production: the captcha endpoints need an API key", async () => {
    t = await open({ env: PRODUCTION });
    expectProblem(
      await t.fastify.inject({ method: "POST", url: "/v1/captcha", payload: { type: "image" } }),
      401,
      "UNAUTHENTICATED",
    );
    expectProblem(await verify({ token: "cc_x", answer: "AB3K" }), 401, "UNAUTHENTICATED");
    expectProblem(
      await verify({ token: "cc_x", answer: "AB3K" }, { authorization: "Bearer not-a-key" }),
      401,
      "UNAUTHENTICATED",
    );
  });

  it("production: the dev API does not exist and no answer is kept in clear", async () => {
    t = await open({ env: PRODUCTION, apps: [SHOP] });
    const { token } = await challenge("image", { authorization: `Bearer ${SHOP_KEY}` });
    expect((await t.fastify.inject({ method: "GET", url: `/v1/dev/captcha/${token}` })).statusCode).toBe(404);
    const row = t.server.backend.db
      .prepare("SELECT answer_hash, dev_answer FROM captcha_challenges WHERE token = ?")
      .get(token) as { answer_hash: string; dev_answer: string | null };
    expect(row.dev_answer).toBeNull();
    expect(row.answer_hash).toMatch(/^[0-9a-f]{64}$/);
  });

  it("refuses a body over 16 KiB with 413 BODY_TOO_LARGE", async () => {
    expectProblem(await verify({ token: "cc_x", answer: "A".repeat(17 * 1024) }), 413, "BODY_TOO_LARGE");
  });
});
