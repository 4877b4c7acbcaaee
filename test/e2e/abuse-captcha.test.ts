/**
 * Issue 3, "Done means": risk-based captcha escalation end to end through the native API and the
 * dev API (`@see issue 3`). Every server runs on a fixed clock; nothing sleeps.
 */
import type { LightMyRequestResponse as InjectResponse } from "fastify";
import { afterEach, describe, expect, it } from "vitest";
import type { AppConfig } from "../../src/config/schema.js";
import type { SendDecision, SendLogEntry } from "../../src/core/ports.js";
import { ipCounterKey, recipientCounterKey } from "../../src/core/verification/keys.js";
import { createTestServer, type TestServer, type TestServerOptions } from "../harness.js";

let t: TestServer;
afterEach(async () => {
  await t?.close();
});

const PROXY = "127.0.0.1";
const SHOP_KEY = "shop-api-key-0123456789abcdef";
const SHOP: AppConfig = { id: "shop", apiKeys: [SHOP_KEY] };

function open(options: TestServerOptions = {}): Promise<TestServer> {
  return createTestServer({ devSender: true, ...options });
}

/** `bot3@example.com`: distinct recipients, so the per-recipient rules never answer first. */
const recipient = (n: number) => `bot${n}@example.com`;

interface SendOptions {
  to: string;
  /** the client address as a trusted proxy reports it */
  forwardedFor?: string;
  captchaToken?: string;
  apiKey?: string;
  body?: Record<string, unknown>;
}

function send(options: SendOptions): Promise<InjectResponse> {
  const headers: Record<string, string> = {};
  if (options.forwardedFor) headers["x-forwarded-for"] = options.forwardedFor;
  if (options.captchaToken !== undefined) headers["x-captcha-token"] = options.captchaToken;
  if (options.apiKey) headers.authorization = `Bearer ${options.apiKey}`;
  return t.fastify.inject({
    method: "POST",
    url: "/v1/verifications",
    headers,
    payload: { channel: "email", to: options.to, purpose: "sign_in", ...options.body },
  });
}

/** Solves a fresh challenge the way an automated test does: the answer comes from the dev API. */
async function solveCaptcha(
  options: { to?: string; apiKey?: string; type?: "image" | "slider" } = {},
): Promise<string> {
  const headers: Record<string, string> = options.apiKey ? { authorization: `Bearer ${options.apiKey}` } : {};
  const challenge = await t.fastify.inject({
    method: "POST",
    url: "/v1/captcha",
    headers,
    payload: { type: options.type ?? "image" },
  });
  expect(challenge.statusCode).toBe(200);
  const { token } = challenge.json();
  const dev = await t.fastify.inject({ method: "GET", url: `/v1/dev/captcha/${token}` });
  expect(dev.statusCode).toBe(200);
  const { answer } = dev.json();
  const verified = await t.fastify.inject({
    method: "POST",
    url: "/v1/captcha/verify",
    headers,
    payload: {
      token,
      answer: typeof answer === "string" ? answer : answer.x,
      ...(options.to ? { to: options.to } : {}),
    },
  });
  expect(verified.statusCode).toBe(200);
  const pass = verified.json();
  expect(pass.expires_in).toBe(600);
  return pass.captcha_token as string;
}

function expectProblem(response: InjectResponse, status: number, code: string): void {
  expect(response.statusCode).toBe(status);
  expect(response.headers["content-type"]).toMatch(/^application\/problem\+json/);
  expect(response.json()).toMatchObject({ status, code });
}

async function sendLog(appId = "default", decision?: SendDecision): Promise<SendLogEntry[]> {
  return t.server.backend.sendLog.query({ appId, limit: 1000, ...(decision ? { decision } : {}) });
}

async function counter(key: string, appId = "default"): Promise<number> {
  return (await t.server.backend.counters.peek(appId, key, t.clock.nowMs())).count;
}

describe("captcha escalation per client IP (unauthenticated dev mode)", () => {
  it("answers the 4th send in 10 minutes from one IP with 428 CAPTCHA_REQUIRED", async () => {
    t = await open();
    for (let n = 1; n <= 3; n++) expect((await send({ to: recipient(n) })).statusCode).toBe(201);
    const refused = await send({ to: recipient(4) });
    expectProblem(refused, 428, "CAPTCHA_REQUIRED");
    expect(refused.json()).toMatchObject({ type: "urn:verifyd:error:captcha-required", retry_after: 600 });
    expect(refused.headers["retry-after"]).toBe("600");
    // a bot that keeps going is refused every time, however long it keeps trying within the window
    for (let n = 5; n <= 12; n++) expectProblem(await send({ to: recipient(n) }), 428, "CAPTCHA_REQUIRED");
    t.clock.advanceSeconds(599);
    expectProblem(await send({ to: recipient(13) }), 428, "CAPTCHA_REQUIRED");
    // the window has passed: the IP gets its three free sends again
    t.clock.advanceSeconds(1);
    expect((await send({ to: recipient(14) })).statusCode).toBe(201);
  });

  it("lets exactly one send through per pass token solved via the dev API", async () => {
    t = await open();
    for (let n = 1; n <= 3; n++) await send({ to: recipient(n) });
    expectProblem(await send({ to: recipient(4) }), 428, "CAPTCHA_REQUIRED");

    const pass = await solveCaptcha();
    expect((await send({ to: recipient(4), captchaToken: pass })).statusCode).toBe(201);
    const replay = await send({ to: recipient(5), captchaToken: pass });
    expectProblem(replay, 400, "CAPTCHA_FAILED");
    expect(replay.json().detail).toMatch(/invalid, expired or already used/);
    // without a pass the IP is still over its risk budget
    expectProblem(await send({ to: recipient(5) }), 428, "CAPTCHA_REQUIRED");
    // each new pass buys exactly one more send
    expect((await send({ to: recipient(5), captchaToken: await solveCaptcha() })).statusCode).toBe(201);
    expect(
      (await send({ to: recipient(6), captchaToken: await solveCaptcha({ type: "slider" }) })).statusCode,
    ).toBe(201);
    expectProblem(await send({ to: recipient(7) }), 428, "CAPTCHA_REQUIRED");
  });

  it("counts nothing for a refused send: recipient and IP budgets stay intact", async () => {
    t = await open();
    const ip = "127.0.0.1";
    for (let n = 1; n <= 3; n++) await send({ to: recipient(n) });
    for (let n = 4; n <= 9; n++) expectProblem(await send({ to: recipient(n) }), 428, "CAPTCHA_REQUIRED");

    // the refused recipients were never counted, nor were the refusals against the IP's rate rule
    for (let n = 4; n <= 9; n++) {
      expect(await counter(recipientCounterKey("email", recipient(n), 60))).toBe(0);
      expect(await counter(recipientCounterKey("email", recipient(n), 600))).toBe(0);
    }
    expect(await counter(ipCounterKey(ip, 3600))).toBe(3);
    expect(await counter(`ip:${ip}:risk:600`)).toBe(3);
    // so, once solved, a refused recipient gets its first send as if nothing had happened
    const sent = await send({ to: recipient(4), captchaToken: await solveCaptcha() });
    expect(sent.statusCode).toBe(201);
    expect(sent.json().resend_after).toBe(60);
    // and the IP's hourly rate rule (10) still has 10 - 4 = 6 sends left: six more passes go through
    for (let n = 10; n < 16; n++) {
      expect((await send({ to: recipient(n), captchaToken: await solveCaptcha() })).statusCode).toBe(201);
    }
    expectProblem(await send({ to: recipient(16), captchaToken: await solveCaptcha() }), 429, "RATE_LIMITED");
  });

  it("honours a configured threshold and window", async () => {
    t = await open({
      apps: [{ id: "default", abuse: { risk: { perIp: { limit: 5, windowSeconds: 60 } } } }],
    });
    for (let n = 1; n <= 5; n++) expect((await send({ to: recipient(n) })).statusCode).toBe(201);
    const refused = await send({ to: recipient(6) });
    expectProblem(refused, 428, "CAPTCHA_REQUIRED");
    expect(refused.json().retry_after).toBe(60);
    t.clock.advanceSeconds(60);
    expect((await send({ to: recipient(6) })).statusCode).toBe(201);
  });
});

describe("what a captcha cannot fix", () => {
  // A client already over its risk budget is asked for a captcha before its request is even read
  // (the cheap refusal under attack); what the request itself would be refused for comes once it
  // presents a pass, and ranks above the captcha there.
  it("a resend too soon: 428 before the body is read, then 429 with a pass", async () => {
    t = await open();
    for (let n = 1; n <= 3; n++) await send({ to: recipient(n) });
    expectProblem(await send({ to: recipient(3) }), 428, "CAPTCHA_REQUIRED");
    expectProblem(
      await send({ to: recipient(3), captchaToken: await solveCaptcha() }),
      429,
      "RESEND_TOO_SOON",
    );
  });

  it("gives back a pass that a rate rule refused, so it still buys one send", async () => {
    t = await open();
    for (let n = 1; n <= 3; n++) await send({ to: recipient(n) });
    const pass = await solveCaptcha();
    expectProblem(await send({ to: recipient(3), captchaToken: pass }), 429, "RESEND_TOO_SOON");
    // no code was issued for it, so the person who solved it need not solve another
    expect((await send({ to: recipient(4), captchaToken: pass })).statusCode).toBe(201);
    expectProblem(await send({ to: recipient(5), captchaToken: pass }), 400, "CAPTCHA_FAILED");
  });

  it("a pumping denial outranks the captcha when the IP is not yet over its budget", async () => {
    t = await open({
      apps: [{ id: "default", abuse: { pumping: { perPrefix: [{ limit: 2, windowSeconds: 3600 }] } } }],
    });
    const sms = (n: number) =>
      t.fastify.inject({
        method: "POST",
        url: "/v1/verifications",
        payload: { channel: "sms", to: `+86138001380${String(n).padStart(2, "0")}`, purpose: "sign_in" },
      });
    for (let n = 1; n <= 2; n++) expect((await sms(n)).statusCode).toBe(201);
    // the third send both trips the IP's risk rule and passes the prefix budget: the denial wins
    expectProblem(await sms(3), 403, "PUMPING_DENIED");
  });

  it("one pass raced by 20 concurrent sends lets exactly one through", async () => {
    t = await open({ apps: [{ id: "default", abuse: { captcha: { native: "always" } } }] });
    const pass = await solveCaptcha();
    const answers = await Promise.all(
      Array.from({ length: 20 }, (_, n) => send({ to: recipient(n), captchaToken: pass })),
    );
    expect(answers.map((answer) => answer.statusCode).sort()).toEqual([201, ...Array<number>(19).fill(400)]);
  });
});

describe("captcha escalation per /24 subnet (rotating IPs behind a trusted proxy)", () => {
  it("answers the 11th send from one /24 with 428 although each IP sent once", async () => {
    t = await open({ env: { VERIFYD_TRUST_PROXY: PROXY } });
    for (let n = 1; n <= 10; n++) {
      expect((await send({ to: recipient(n), forwardedFor: `198.51.100.${n}` })).statusCode).toBe(201);
    }
    expectProblem(await send({ to: recipient(11), forwardedFor: "198.51.100.11" }), 428, "CAPTCHA_REQUIRED");
    // a neighbouring /24 is another subnet
    expect((await send({ to: recipient(12), forwardedFor: "198.51.101.1" })).statusCode).toBe(201);
    const [refusal] = await sendLog("default", "captcha_required");
    expect(refusal).toMatchObject({ ip: "198.51.100.11", reason: "risk_subnet:10/600s" });
  });

  it("believes X-Forwarded-For only from the trusted proxy", async () => {
    t = await open();
    // without VERIFYD_TRUST_PROXY every request is the socket's 127.0.0.1, whatever the header says
    for (let n = 1; n <= 3; n++) await send({ to: recipient(n), forwardedFor: `198.51.100.${n}` });
    expectProblem(await send({ to: recipient(4), forwardedFor: "203.0.113.4" }), 428, "CAPTCHA_REQUIRED");
    const [refusal] = await sendLog("default", "captcha_required");
    expect(refusal).toMatchObject({ ip: "127.0.0.1", reason: "risk_ip:3/600s" });
  });

  it("groups IPv6 subnets by /56, a home line's delegation", async () => {
    t = await open({
      env: { VERIFYD_TRUST_PROXY: PROXY },
      apps: [{ id: "default", abuse: { risk: { perSubnet: { limit: 2, windowSeconds: 600 } } } }],
    });
    expect((await send({ to: recipient(1), forwardedFor: "2001:db8:1:2::a" })).statusCode).toBe(201);
    expect((await send({ to: recipient(2), forwardedFor: "2001:db8:1:3:ffff::b" })).statusCode).toBe(201);
    expectProblem(
      await send({ to: recipient(3), forwardedFor: "2001:db8:1:ff::c" }),
      428,
      "CAPTCHA_REQUIRED",
    );
    expect((await send({ to: recipient(4), forwardedFor: "2001:db8:1:100::a" })).statusCode).toBe(201);
  });
});

describe("captcha escalation per device (API-key caller passing device_id)", () => {
  it("answers the 4th send from one device with 428 even from fresh IPs", async () => {
    t = await open({ apps: [SHOP] });
    const fromDevice = (n: number, device = "device-1") =>
      send({ to: recipient(n), apiKey: SHOP_KEY, body: { device_id: device, client_ip: `203.0.${n}.9` } });
    for (let n = 1; n <= 3; n++) expect((await fromDevice(n)).statusCode).toBe(201);
    expectProblem(await fromDevice(4), 428, "CAPTCHA_REQUIRED");
    expect((await fromDevice(5, "device-2")).statusCode).toBe(201);
    const [refusal] = await sendLog("shop", "captcha_required");
    expect(refusal).toMatchObject({
      face: "native",
      ip: "203.0.4.9",
      deviceId: "device-1",
      reason: "risk_device:3/600s",
    });
    // a pass solved for this app lets the device through once
    expect(
      (
        await send({
          to: recipient(6),
          apiKey: SHOP_KEY,
          captchaToken: await solveCaptcha({ apiKey: SHOP_KEY }),
          body: { device_id: "device-1", client_ip: "203.0.6.9" },
        })
      ).statusCode,
    ).toBe(201);
  });

  it("ignores device_id and client_ip from an unauthenticated caller", async () => {
    t = await open();
    const spoof = (n: number) =>
      send({ to: recipient(n), body: { device_id: `d${n}`, client_ip: `203.0.${n}.9` } });
    for (let n = 1; n <= 3; n++) expect((await spoof(n)).statusCode).toBe(201);
    // rotating the claimed IP and device does not escape the socket's IP
    expectProblem(await spoof(4), 428, "CAPTCHA_REQUIRED");
    const [refusal] = await sendLog("default", "captcha_required");
    expect(refusal?.ip).toBe("127.0.0.1");
    expect(refusal?.deviceId).toBeUndefined();
  });
});

describe("pass tokens: binding, replay, app", () => {
  it('"always": one unbound pass tells whether one account exists, not one after another', async () => {
    t = await open({ apps: [{ id: "default", abuse: { captcha: { native: "always" } } }] });
    const pass = await solveCaptcha();
    const lookUp = (to: string, captchaToken?: string) =>
      send({ to, ...(captchaToken === undefined ? {} : { captchaToken }), body: { target: "user" } });
    expectProblem(await lookUp(recipient(1)), 428, "CAPTCHA_REQUIRED");
    expectProblem(await lookUp(recipient(1), pass), 409, "ACCOUNT_NOT_FOUND");
    // Given back bound to the recipient it asked about: no use for the next one...
    expectProblem(await lookUp(recipient(2), pass), 400, "CAPTCHA_FAILED");
    // ...and spent by that try (fail closed), though it would have served its own recipient.
    expectProblem(await lookUp(recipient(1), pass), 400, "CAPTCHA_FAILED");
    const fresh = await solveCaptcha();
    expectProblem(await lookUp(recipient(1), fresh), 409, "ACCOUNT_NOT_FOUND");
    expect((await send({ to: recipient(1), captchaToken: fresh })).statusCode).toBe(201);
  });

  it("refuses a pass bound to recipient A for recipient B, and spends it (fail closed)", async () => {
    t = await open({ apps: [{ id: "default", abuse: { captcha: { native: "always" } } }] });
    const pass = await solveCaptcha({ to: "Ann@Example.COM" });
    const other = await send({ to: "bob@example.com", captchaToken: pass });
    expectProblem(other, 400, "CAPTCHA_FAILED");
    expect(other.json().detail).toMatch(/another recipient/);
    // the leaked pass cannot be retried against its own recipient either
    expectProblem(await send({ to: "Ann@example.com", captchaToken: pass }), 400, "CAPTCHA_FAILED");
    // a pass bound to A serves A (the address is normalised on both sides)
    const fresh = await solveCaptcha({ to: "Ann@EXAMPLE.com" });
    expect((await send({ to: "Ann@example.com", captchaToken: fresh })).statusCode).toBe(201);
  });

  it("binds to a phone number however it was written", async () => {
    t = await open({ apps: [{ id: "default", abuse: { captcha: { native: "always" } } }] });
    const pass = await solveCaptcha({ to: "13800138000" });
    const sent = await t.fastify.inject({
      method: "POST",
      url: "/v1/verifications",
      headers: { "x-captcha-token": pass },
      payload: { channel: "sms", to: "+86 138 0013 8000", purpose: "sign_in" },
    });
    expect(sent.statusCode).toBe(201);
  });

  it("refuses a replayed pass", async () => {
    t = await open({ apps: [{ id: "default", abuse: { captcha: { native: "always" } } }] });
    const pass = await solveCaptcha({ to: recipient(1) });
    expect((await send({ to: recipient(1), captchaToken: pass })).statusCode).toBe(201);
    t.clock.advanceSeconds(60);
    expectProblem(await send({ to: recipient(1), captchaToken: pass }), 400, "CAPTCHA_FAILED");
  });

  it("refuses a pass solved for another app, and leaves it usable there", async () => {
    t = await open({ apps: [{ ...SHOP, abuse: { captcha: { native: "always" } } }] });
    const pass = await solveCaptcha({ apiKey: SHOP_KEY });
    for (let n = 1; n <= 3; n++) await send({ to: recipient(n) });
    expectProblem(await send({ to: recipient(4), captchaToken: pass }), 400, "CAPTCHA_FAILED");
    expect((await send({ to: recipient(4), apiKey: SHOP_KEY, captchaToken: pass })).statusCode).toBe(201);
  });

  it("replays the first answer to a retry under the same Idempotency-Key (@see issue 3)", async () => {
    t = await open({ apps: [{ id: "default", abuse: { captcha: { native: "always" } } }] });
    const pass = await solveCaptcha();
    const retry = (key: string, to = recipient(1)) =>
      t.fastify.inject({
        method: "POST",
        url: "/v1/verifications",
        headers: { "x-captcha-token": pass, "idempotency-key": key },
        payload: { channel: "email", to, purpose: "sign_in" },
      });
    const first = await retry("attempt-1");
    expect(first.statusCode).toBe(201);
    t.clock.advanceSeconds(30);
    const again = await retry("attempt-1");
    expect(again.statusCode).toBe(201);
    expect(again.json()).toEqual(first.json());
    // the spent pass buys nothing more: not under another key, not for another recipient
    expectProblem(await retry("attempt-2"), 400, "CAPTCHA_FAILED");
    expectProblem(await retry("attempt-1", recipient(2)), 400, "VALIDATION_FAILED");
    expect(t.server.backend.db.prepare("SELECT count(*) AS n FROM codes").get()).toEqual({ n: 1 });
    // nor once the first answer is no longer kept (24 h)
    t.clock.advanceSeconds(24 * 3600);
    expectProblem(await retry("attempt-1"), 400, "CAPTCHA_FAILED");
  });

  it("issues no new code for a spent pass whose first answer is gone", async () => {
    t = await open({ apps: [{ id: "default", abuse: { captcha: { native: "always" } } }] });
    const pass = await solveCaptcha();
    const retry = (to: string) =>
      t.fastify.inject({
        method: "POST",
        url: "/v1/verifications",
        headers: { "x-captcha-token": pass, "idempotency-key": "attempt-1" },
        payload: { channel: "email", to, purpose: "sign_in" },
      });
    expect((await retry(recipient(1))).statusCode).toBe(201);
    // The first code goes while its key and the pass's mark live on (a cluster's Redis keeps a
    // code an hour past its expiry, the key a day): the retry would otherwise be a new send.
    t.server.backend.db.prepare("DELETE FROM codes").run();
    expectProblem(await retry(recipient(2)), 400, "CAPTCHA_FAILED");
    expectProblem(await retry(recipient(1)), 400, "CAPTCHA_FAILED");
    expect(t.server.backend.db.prepare("SELECT count(*) AS n FROM codes").get()).toEqual({ n: 0 });
  });

  it("replays a send that crossed the risk threshold to its retry, rather than asking for a captcha", async () => {
    t = await open();
    for (let n = 1; n <= 2; n += 1) expect((await send({ to: recipient(n) })).statusCode).toBe(201);
    const third = () =>
      t.fastify.inject({
        method: "POST",
        url: "/v1/verifications",
        headers: { "idempotency-key": "third-send" },
        payload: { channel: "email", to: recipient(3), purpose: "sign_in" },
      });
    const first = await third();
    expect(first.statusCode, first.body).toBe(201);
    // The client is past the threshold now: a new send is asked for a captcha before its body is
    // read, but the retry of the third gets its first answer.
    expectProblem(await send({ to: recipient(4) }), 428, "CAPTCHA_REQUIRED");
    const retried = await third();
    expect(retried.statusCode, retried.body).toBe(201);
    expect(retried.json()).toEqual(first.json());
    // A new send under a new key is still refused, by the full path.
    const fresh = await t.fastify.inject({
      method: "POST",
      url: "/v1/verifications",
      headers: { "idempotency-key": "fourth-send" },
      payload: { channel: "email", to: recipient(4), purpose: "sign_in" },
    });
    expectProblem(fresh, 428, "CAPTCHA_REQUIRED");
  });

  it("gives back a fresh pass presented with a retry that replays the first answer", async () => {
    t = await open({ apps: [{ id: "default", abuse: { captcha: { native: "always" } } }] });
    const sendWith = (pass: string, key: string, to: string) =>
      t.fastify.inject({
        method: "POST",
        url: "/v1/verifications",
        headers: { "x-captcha-token": pass, "idempotency-key": key },
        payload: { channel: "email", to, purpose: "sign_in" },
      });
    const first = await sendWith(await solveCaptcha(), "attempt-1", recipient(1));
    expect(first.statusCode).toBe(201);
    const fresh = await solveCaptcha();
    const replayed = await sendWith(fresh, "attempt-1", recipient(1));
    expect(replayed.json()).toEqual(first.json());
    // the replay issued nothing, so the fresh pass still buys one send
    expect((await sendWith(fresh, "attempt-2", recipient(2))).statusCode).toBe(201);
    expectProblem(await sendWith(fresh, "attempt-3", recipient(3)), 400, "CAPTCHA_FAILED");
  });

  it("refuses a pass after 600 s", async () => {
    t = await open({ apps: [{ id: "default", abuse: { captcha: { native: "always" } } }] });
    const pass = await solveCaptcha();
    t.clock.advanceSeconds(600);
    expectProblem(await send({ to: recipient(1), captchaToken: pass }), 400, "CAPTCHA_FAILED");
    const late = await solveCaptcha();
    t.clock.advanceSeconds(599);
    expect((await send({ to: recipient(1), captchaToken: late })).statusCode).toBe(201);
  });
});

describe("account look-ups", () => {
  it("count on the client's risk rules and are logged, so a run of them meets the captcha (@see issue 3)", async () => {
    t = await open();
    const probe = (n: number, captchaToken?: string) =>
      send({
        to: recipient(n),
        body: { target: "user" },
        ...(captchaToken ? { captchaToken } : {}),
      });
    for (let n = 1; n <= 3; n++) expect((await probe(n)).json()).toMatchObject({ code: "ACCOUNT_NOT_FOUND" });
    // The fourth look-up is the client's fourth try in 10 minutes, as a fourth send would be.
    expectProblem(await probe(4), 428, "CAPTCHA_REQUIRED");
    expect((await probe(4, await solveCaptcha({ to: recipient(4) }))).json()).toMatchObject({
      code: "ACCOUNT_NOT_FOUND",
    });
    // A send from the same client meets the same captcha: the look-ups counted as tries.
    expectProblem(await send({ to: recipient(5) }), 428, "CAPTCHA_REQUIRED");
    // Four look-ups alike as logged (the same masked recipient): one entry counting them.
    const looked = await sendLog("default", "account_refused");
    expect(looked).toHaveLength(1);
    expect(looked[0]).toMatchObject({
      ip: "127.0.0.1",
      reason: "account_not_found",
      to: "b***@example.com",
      count: 4,
    });
    expect(await sendLog("default", "accepted")).toEqual([]);
  });
});

describe("captcha mode per face", () => {
  it('"never": no 428 however busy the IP; the rate rules answer instead', async () => {
    t = await open({ apps: [{ id: "default", abuse: { captcha: { native: "never" } } }] });
    for (let n = 1; n <= 10; n++) expect((await send({ to: recipient(n) })).statusCode).toBe(201);
    expectProblem(await send({ to: recipient(11) }), 429, "RATE_LIMITED");
    // a pass token is not asked for and not spent
    expectProblem(await send({ to: recipient(12), captchaToken: "cp_whatever" }), 429, "RATE_LIMITED");
    expect(await sendLog("default", "captcha_required")).toEqual([]);
  });

  it('"always": every send needs its own pass, from the very first', async () => {
    t = await open({ apps: [{ id: "default", abuse: { captcha: { native: "always" } } }] });
    const first = await send({ to: recipient(1) });
    expectProblem(first, 428, "CAPTCHA_REQUIRED");
    expect(first.headers["retry-after"]).toBeUndefined();
    for (let n = 1; n <= 5; n++) {
      expect((await send({ to: recipient(n), captchaToken: await solveCaptcha() })).statusCode).toBe(201);
      expectProblem(await send({ to: recipient(n + 100) }), 428, "CAPTCHA_REQUIRED");
    }
    const [refusal] = await sendLog("default", "captcha_required");
    expect(refusal?.reason).toBe("captcha_always");
  });

  it("never asks a test recipient's send for a captcha, in either mode, before its body or after", async () => {
    const review = { to: "review@shop.example", code: "123456" };
    for (const mode of ["risk", "always"] as const) {
      t = await open({
        apps: [{ id: "default", abuse: { captcha: { native: mode } }, testRecipients: [review] }],
      });
      // past the risk threshold from this address (in "always", from the first send)
      for (let n = 1; n <= 3; n++) await send({ to: recipient(n) });
      expect((await send({ to: review.to })).statusCode).toBe(201);
      expectProblem(await send({ to: recipient(4) }), 428, "CAPTCHA_REQUIRED");
      await t.close();
    }
  });

  it('"risk" is the native default, while another app\'s setting does not leak', async () => {
    t = await open({ apps: [{ ...SHOP, abuse: { captcha: { native: "always" } } }] });
    expect((await send({ to: recipient(1) })).statusCode).toBe(201);
    expectProblem(await send({ to: recipient(2), apiKey: SHOP_KEY }), 428, "CAPTCHA_REQUIRED");
  });

  it("refuses an invalid pass even when no captcha was needed yet, and records it", async () => {
    t = await open();
    const refused = await send({ to: recipient(1), captchaToken: "cp_forged" });
    expectProblem(refused, 400, "CAPTCHA_FAILED");
    expect(await counter(recipientCounterKey("email", recipient(1), 60))).toBe(0);
    const [failure] = await sendLog("default", "captcha_failed");
    expect(failure).toMatchObject({ to: "b***@example.com", ip: "127.0.0.1", decision: "captcha_failed" });
  });
});
