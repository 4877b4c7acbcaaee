import { createHash } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import { createTestServer, type TestServer } from "../../../test/harness.js";
import { sqliteBackendOf } from "../../storage/sqlite/index.js";

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

// ---------------------------------------------------------------------------------------------
// The native API by route and status (unkey's `{200,400,401}_test.go` layout). Bad input has its
// own table in bad-input.test.ts.

const SEND = "/v1/verifications";
const CHECK = "/v1/verifications/check";
const ANN = "ann@example.com";
// Tests that send more than three codes from one address switch off the captcha escalation (abuse
// defence, tested beside it) so the rule under test answers.
const NO_CAPTCHA = { apps: [{ id: "default", abuse: { captcha: { native: "never" as const } } }] };

async function sendCode(payload: Record<string, unknown> = {}, headers: Record<string, string> = {}) {
  return t.fastify.inject({
    method: "POST",
    url: SEND,
    payload: { channel: "email", to: ANN, purpose: "sign_in", ...payload },
    headers,
  });
}

/** Sends and delivers a code; returns the verification id and the code the recipient got. */
async function issued(payload: Record<string, unknown> = {}): Promise<{ id: string; code: string }> {
  const reply = await sendCode(payload);
  expect(reply.statusCode).toBe(201);
  await t.deliverAll();
  const to = reply.json().channel === "sms" ? "+8613800138000" : ((payload.to as string | undefined) ?? ANN);
  const code = t.email.lastCodeFor(to) ?? t.sms.lastCodeFor(to);
  return { id: reply.json().id, code: code as string };
}

async function check(id: string, code: string) {
  return t.fastify.inject({ method: "POST", url: CHECK, payload: { id, code } });
}

function wrongCode(code: string): string {
  return code === "000000" ? "000001" : "000000";
}

describe("POST /v1/verifications", () => {
  describe("201", () => {
    it("answers an SMS send with the masked E.164 number", async () => {
      t = await createTestServer();
      const reply = await sendCode({ channel: "sms", to: "+86 138 0013 8000" });
      expect(reply.statusCode).toBe(201);
      expect(reply.json()).toEqual({
        id: expect.stringMatching(/^vf_/),
        channel: "sms",
        to: "+86*********00",
        purpose: "sign_in",
        status: "pending",
        expires_in: 600,
        resend_after: 60,
      });
    });

    it("reads a national number in the given country", async () => {
      t = await createTestServer();
      const reply = await sendCode({ channel: "sms", to: "13800138000", country: "CN" });
      expect(reply.statusCode).toBe(201);
      await t.deliverAll();
      expect(t.sms.messages[0]?.to).toBe("+8613800138000");
    });

    it("picks the template language from Accept-Language when no locale is given", async () => {
      t = await createTestServer();
      await sendCode({}, { "accept-language": "zh-CN,zh;q=0.9,en;q=0.8" });
      await sendCode({ to: "bob@example.com", locale: "en" }, { "accept-language": "zh-CN" });
      await t.deliverAll();
      expect(t.email.messages.find((message) => message.to === ANN)?.locale).toBe("zh-Hans");
      expect(t.email.messages.find((message) => message.to === "bob@example.com")?.locale).toBe("en");
    });

    it("falls back to the default locale for a purpose the asked one has no template of", async () => {
      const fr = { sign_in: { fr: { subject: "Votre code", text: "Votre code : {code}" } } };
      t = await createTestServer({ apps: [{ id: "default", templates: fr }] });
      expect((await sendCode({}, { "accept-language": "fr-FR" })).statusCode).toBe(201);
      const signUp = await sendCode(
        { to: "bob@example.com", purpose: "sign_up" },
        { "accept-language": "fr-FR" },
      );
      expect(signUp.statusCode, signUp.body).toBe(201);
      await t.deliverAll();
      expect(t.email.messages.find((message) => message.to === ANN)?.locale).toBe("fr");
      expect(t.email.messages.find((message) => message.to === "bob@example.com")?.locale).toBe("en");
    });

    it("replays the first answer for a repeated Idempotency-Key and sends one message", async () => {
      t = await createTestServer();
      const headers = { "idempotency-key": "signup-7f3a" };
      const first = await sendCode({}, headers);
      t.clock.advanceSeconds(5);
      const again = await sendCode({}, headers);
      expect(again.statusCode).toBe(201);
      expect(again.json()).toEqual(first.json());
      await t.deliverAll();
      expect(t.email.messages).toHaveLength(1);
    });

    it("replays a sign-up send to its retry though the account exists by then", async () => {
      t = await createTestServer();
      const headers = { "idempotency-key": "signup-9c1d" };
      const first = await sendCode({ purpose: "sign_up", target: "not_user" }, headers);
      expect(first.statusCode).toBe(201);
      const app = await t.engine.apps.byId("default");
      await t.engine.accounts.create({ app: app!, email: ANN });
      t.clock.advanceSeconds(5);
      const again = await sendCode({ purpose: "sign_up", target: "not_user" }, headers);
      expect(again.statusCode, again.body).toBe(201);
      expect(again.json()).toEqual(first.json());
      // a new send for that account is refused as before
      expect((await sendCode({ purpose: "sign_up", target: "not_user" })).json().code).toBe("ACCOUNT_EXISTS");
    });

    it("refuses a reused Idempotency-Key whose request asks for another send, and replays one in another language", async () => {
      t = await createTestServer();
      const headers = { "idempotency-key": "signup-4b2e" };
      const first = await sendCode({ locale: "en" }, headers);
      expect(first.statusCode).toBe(201);
      const inChinese = await sendCode({ locale: "zh-Hans" }, headers);
      expect(inChinese.statusCode).toBe(201);
      expect(inChinese.json().id).toBe(first.json().id);
      for (const other of [{ purpose: "reverify" }, { target: "user" }]) {
        const reused = await sendCode({ locale: "en", ...other }, headers);
        expect(reused.statusCode, JSON.stringify(other)).toBe(400);
        expect(reused.json()).toMatchObject({ code: "VALIDATION_FAILED", field: "Idempotency-Key" });
      }
    });

    it("never replays one account's own-contact send to another's under a key an older build stored", async () => {
      t = await createTestServer();
      const app = await t.engine.apps.byId("default");
      const ann = await t.engine.accounts.create({ app: app!, email: ANN });
      const bob = await t.engine.accounts.create({ app: app!, email: "bob@example.com" });
      const headers = { "idempotency-key": "own-1" };
      const own = (accountId: string) =>
        sendCode({ to: undefined, account_id: accountId, purpose: "reverify" }, headers);
      expect((await own(ann.id)).statusCode).toBe(201);
      // as a build before the full fingerprint stored it: channel, recipient, purpose
      const legacy = createHash("sha256").update(`email\0${ANN}\0reverify`).digest("hex");
      sqliteBackendOf(t.server.backend).db.prepare("UPDATE idempotency SET fingerprint = ?").run(legacy);
      const bobs = await own(bob.id);
      expect(bobs.statusCode, bobs.body).toBe(400);
      expect(bobs.json()).toMatchObject({ code: "VALIDATION_FAILED", field: "Idempotency-Key" });
      // while Ann's own retry still gets her first answer
      expect((await own(ann.id)).json().to).toBe("a***@example.com");
    });

    it("sends to the logged-in account's own contact when `to` is absent", async () => {
      t = await createTestServer();
      const app = await t.engine.apps.byId("default");
      const account = await t.engine.accounts.create({ app: app!, email: ANN });
      const reply = await sendCode({ to: undefined, account_id: account.id, purpose: "reverify" });
      expect(reply.statusCode).toBe(201);
      expect(reply.json().to).toBe("a***@example.com");
    });
  });

  describe("409", () => {
    it("answers target user for an unknown recipient with ACCOUNT_NOT_FOUND", async () => {
      t = await createTestServer();
      const reply = await sendCode({ target: "user" });
      expect(reply.statusCode).toBe(409);
      expect(reply.json()).toMatchObject({ status: 409, code: "ACCOUNT_NOT_FOUND" });
    });

    it("answers target not_user for a known recipient with ACCOUNT_EXISTS", async () => {
      t = await createTestServer();
      const app = await t.engine.apps.byId("default");
      await t.engine.accounts.create({ app: app!, email: ANN });
      expect((await sendCode({ target: "not_user" })).json().code).toBe("ACCOUNT_EXISTS");
      expect((await sendCode({ target: "user" })).statusCode).toBe(201);
    });

    it("refuses to bind a contact to an account that already has one with CONTACT_ALREADY_SET", async () => {
      t = await createTestServer();
      const app = await t.engine.apps.byId("default");
      const account = await t.engine.accounts.create({ app: app!, email: "old@example.com" });
      const reply = await sendCode({ purpose: "bind_contact", account_id: account.id });
      expect(reply.statusCode).toBe(409);
      expect(reply.json().code).toBe("CONTACT_ALREADY_SET");
    });
  });

  describe("429", () => {
    it("refuses a resend inside 60 s with RESEND_TOO_SOON, Retry-After and retry_after agreeing", async () => {
      t = await createTestServer();
      await sendCode();
      t.clock.advanceSeconds(25);
      const reply = await sendCode();
      expect(reply.statusCode).toBe(429);
      expect(reply.headers["content-type"]).toMatch(/^application\/problem\+json/);
      expect(reply.headers["retry-after"]).toBe("35");
      expect(reply.json()).toMatchObject({ code: "RESEND_TOO_SOON", retry_after: 35 });
    });

    it("limits sends per client IP when an API-key caller passes client_ip", async () => {
      const key = "vk_test_backend_0123456789abcdef";
      t = await createTestServer({
        env: { VERIFYD_MODE: "production", VERIFYD_SECRET: "production-secret-0123456789" },
        apps: [{ id: "shop", apiKeys: [key], abuse: { captcha: { native: "never" } } }],
      });
      const headers = { authorization: `Bearer ${key}` };
      for (let i = 0; i < 10; i++) {
        const reply = await sendCode({ to: `user${i}@example.com`, client_ip: "203.0.113.9" }, headers);
        expect(reply.statusCode).toBe(201);
      }
      const refused = await sendCode({ to: "late@example.com", client_ip: "203.0.113.9" }, headers);
      expect(refused.statusCode).toBe(429);
      expect(refused.json().code).toBe("RATE_LIMITED");
      expect(refused.headers["retry-after"]).toBe("3600");
      // another end user of the same backend is not affected
      expect(
        (await sendCode({ to: "late@example.com", client_ip: "203.0.113.10" }, headers)).statusCode,
      ).toBe(201);
    });

    // Regression: the per-IP rules counted each IPv6 address apart, so a client routed a /64 (any
    // IPv6 subscriber) had no per-IP limit, and an IPv4 address written as IPv4-mapped IPv6 had two.
    // @see .scratch/abuse F1
    it("counts an IPv6 /64 as one client, and an IPv4-mapped address as its IPv4 one", async () => {
      const key = "vk_test_backend_0123456789abcdef";
      t = await createTestServer({
        env: { VERIFYD_MODE: "production", VERIFYD_SECRET: "production-secret-0123456789" },
        apps: [{ id: "shop", apiKeys: [key], abuse: { captcha: { native: "never" } } }],
      });
      const headers = { authorization: `Bearer ${key}` };
      const from = (clientIp: string, n: number) =>
        sendCode({ to: `user${n}@example.com`, client_ip: clientIp }, headers);
      for (let i = 0; i < 10; i++) expect((await from(`2001:db8:1:2::${i + 1}`, i)).statusCode).toBe(201);
      const rotated = await from("2001:db8:1:2:ffff::99", 10);
      expect(rotated.statusCode).toBe(429);
      expect(rotated.json().code).toBe("RATE_LIMITED");
      // the next /64 is another subscriber
      expect((await from("2001:db8:1:3::1", 11)).statusCode).toBe(201);
      for (let i = 0; i < 10; i++) {
        const spelled = i % 2 === 0 ? "198.51.100.7" : "::ffff:198.51.100.7";
        expect((await from(spelled, 20 + i)).statusCode).toBe(201);
      }
      expect((await from("::ffff:198.51.100.7", 30)).json().code).toBe("RATE_LIMITED");
    });

    it("asks a client for a captcha by its /64, and a line's other /64s by their /56", async () => {
      const key = "vk_test_backend_0123456789abcdef";
      t = await createTestServer({
        env: { VERIFYD_MODE: "production", VERIFYD_SECRET: "production-secret-0123456789" },
        apps: [{ id: "shop", apiKeys: [key] }],
      });
      const headers = { authorization: `Bearer ${key}` };
      const from = (clientIp: string, n: number) =>
        sendCode({ to: `user${n}@example.com`, client_ip: clientIp }, headers);
      // the risk rule per client: 3 sends in 10 minutes, then a captcha
      for (let i = 0; i < 3; i++) expect((await from(`2001:db8:1:2::${i + 1}`, i)).statusCode).toBe(201);
      expect((await from("2001:db8:1:2::ff", 3)).json().code).toBe("CAPTCHA_REQUIRED");
      // the rule per subnet: 10 sends from a /56 (here its other /64s), then a captcha
      for (let i = 0; i < 7; i++)
        expect((await from(`2001:db8:1:${10 + i}::1`, 10 + i)).statusCode).toBe(201);
      expect((await from("2001:db8:1:ff::1", 20)).json().code).toBe("CAPTCHA_REQUIRED");
      // another line (the next /56) is not held up
      expect((await from("2001:db8:1:100::1", 21)).statusCode).toBe(201);
    });

    // Regression: the captcha routes counted the backend's own address, so one user's wrong answers
    // (or 30 challenges among all users) refused every user of the backend for 10 minutes.
    // @see captcha review 4
    it("counts captcha challenges and answers per client_ip an API-key caller passes", async () => {
      const key = "vk_test_backend_0123456789abcdef";
      t = await createTestServer({
        env: { VERIFYD_MODE: "production", VERIFYD_SECRET: "production-secret-0123456789" },
        apps: [{ id: "shop", apiKeys: [key] }],
      });
      const headers = { authorization: `Bearer ${key}` };
      const post = (url: string, payload: Record<string, unknown>) =>
        t!.fastify.inject({ method: "POST", url, headers, payload });
      let challenge = { token: "" };
      for (let i = 0; i < 10; i++) {
        // a challenge takes three tries
        if (i % 3 === 0)
          challenge = (await post("/v1/captcha", { type: "image", client_ip: "203.0.113.9" })).json();
        const answer = { token: challenge.token, answer: "WRONG", client_ip: "203.0.113.9" };
        expect((await post("/v1/captcha/verify", answer)).statusCode).toBe(400);
      }
      expect((await post("/v1/captcha", { type: "image", client_ip: "203.0.113.9" })).statusCode).toBe(429);
      // the backend's other users are not refused for one user's guesses
      expect((await post("/v1/captcha", { type: "image", client_ip: "203.0.113.10" })).statusCode).toBe(200);
      expect((await post("/v1/captcha", { type: "image" })).statusCode).toBe(200);
      const bad = await post("/v1/captcha", { type: "image", client_ip: "203.0.113.9:80" });
      expect(bad.statusCode).toBe(400);
      expect(bad.json().field ?? bad.json().detail).toMatch(/client_ip/);
    });

    it("ignores client_ip from an unauthenticated caller and counts the socket's address", async () => {
      t = await createTestServer(NO_CAPTCHA);
      for (let i = 0; i < 10; i++) {
        const reply = await sendCode({ to: `user${i}@example.com`, client_ip: `198.51.100.${i}` });
        expect(reply.statusCode).toBe(201);
      }
      const refused = await sendCode({ to: "late@example.com", client_ip: "198.51.100.99" });
      expect(refused.statusCode).toBe(429);
      expect(refused.json().code).toBe("RATE_LIMITED");
    });

    it("believes X-Forwarded-For only from a proxy VERIFYD_TRUST_PROXY names", async () => {
      t = await createTestServer({
        env: { VERIFYD_TRUST_PROXY: "127.0.0.1" },
        apps: [{ id: "default", abuse: { captcha: { native: "never" } } }],
      });
      for (let i = 0; i < 10; i++) {
        const headers = { "x-forwarded-for": "203.0.113.50" };
        expect((await sendCode({ to: `user${i}@example.com` }, headers)).statusCode).toBe(201);
      }
      expect(
        (await sendCode({ to: "a@example.com" }, { "x-forwarded-for": "203.0.113.50" })).statusCode,
      ).toBe(429);
      expect(
        (await sendCode({ to: "b@example.com" }, { "x-forwarded-for": "203.0.113.51" })).statusCode,
      ).toBe(201);
    });
  });
});

describe("POST /v1/verifications/check", () => {
  describe("200", () => {
    it("approves the right code with a token valid for 600 s", async () => {
      t = await createTestServer();
      const { id, code } = await issued();
      const reply = await check(id, code);
      expect(reply.statusCode).toBe(200);
      expect(reply.json()).toEqual({
        id,
        status: "approved",
        token: expect.stringMatching(/^vt_[0-9a-z]{9}[\w-]{32}$/),
        token_expires_in: 600,
      });
    });
  });

  describe("410", () => {
    it("answers a code checked at 600 s with CODE_EXPIRED", async () => {
      t = await createTestServer();
      const { id, code } = await issued();
      t.clock.advanceSeconds(600);
      const reply = await check(id, code);
      expect(reply.statusCode).toBe(410);
      expect(reply.json().code).toBe("CODE_EXPIRED");
    });

    it("answers a superseded code with CODE_SUPERSEDED", async () => {
      t = await createTestServer();
      const first = await issued();
      t.clock.advanceSeconds(60);
      const second = await issued();
      expect((await check(first.id, first.code)).json()).toMatchObject({
        status: 410,
        code: "CODE_SUPERSEDED",
      });
      expect((await check(second.id, second.code)).statusCode).toBe(200);
    });

    it("answers a canceled code with CODE_CANCELED", async () => {
      t = await createTestServer();
      const { id, code } = await issued();
      await t.fastify.inject({ method: "POST", url: `/v1/verifications/${id}/cancel` });
      expect((await check(id, code)).json()).toMatchObject({ status: 410, code: "CODE_CANCELED" });
    });
  });

  describe("422", () => {
    it("answers a wrong code with CODE_INVALID and attempts_remaining counting down", async () => {
      t = await createTestServer();
      const { id, code } = await issued();
      const remaining: number[] = [];
      for (let i = 0; i < 5; i++) {
        const reply = await check(id, wrongCode(code));
        expect(reply.statusCode).toBe(422);
        expect(reply.json()).toMatchObject({ code: "CODE_INVALID", field: "code" });
        remaining.push(reply.json().attempts_remaining);
      }
      expect(remaining).toEqual([4, 3, 2, 1, 0]);
    });
  });

  describe("429", () => {
    it("rejects the sixth check even when correct with TOO_MANY_ATTEMPTS", async () => {
      t = await createTestServer();
      const { id, code } = await issued();
      for (let i = 0; i < 5; i++) await check(id, wrongCode(code));
      const reply = await check(id, code);
      expect(reply.statusCode).toBe(429);
      expect(reply.json()).toMatchObject({ code: "TOO_MANY_ATTEMPTS", attempts_remaining: 0 });
      // A 429 says how long to wait: for a worn-out code, at most until a new one may be sent.
      expect(reply.headers["retry-after"]).toBe("60");
      expect(reply.json().retry_after).toBe(60);
      const cancel = await t.fastify.inject({ method: "POST", url: `/v1/verifications/${id}/cancel` });
      expect(cancel.statusCode).toBe(429);
      expect(cancel.headers["retry-after"]).toBe("60");
    });

    it("refuses checks, and sends, once the recipient's failed-check budget is spent, with Retry-After", async () => {
      t = await createTestServer(NO_CAPTCHA);
      const earlier = await issued({ purpose: "sign_up" });
      for (let round = 0; round < 4; round++) {
        t.clock.advanceSeconds(60);
        const { id, code } = await issued();
        for (let i = 0; i < 5; i++) await check(id, wrongCode(code));
      }
      const reply = await check(earlier.id, earlier.code);
      expect(reply.statusCode).toBe(429);
      // The budget's day started at the first failure, 3 × 60 s before the last.
      expect(reply.json()).toMatchObject({ code: "TOO_MANY_ATTEMPTS", retry_after: 86_400 - 180 });
      expect(reply.headers["retry-after"]).toBe(String(86_400 - 180));
      // A code sent now could not be checked: the send is refused until the budget's day ends.
      t.clock.advanceSeconds(600);
      const send = await sendCode({});
      expect(send.statusCode).toBe(429);
      expect(send.json()).toMatchObject({ code: "RATE_LIMITED", retry_after: 86_400 - 780 });
    });
  });
});

describe("GET /v1/verifications/{id}", () => {
  describe("200", () => {
    it("shows status, attempts left, seconds left and each delivery", async () => {
      t = await createTestServer();
      const { id, code } = await issued();
      t.clock.advanceSeconds(100);
      await check(id, wrongCode(code));
      const reply = await t.fastify.inject({ method: "GET", url: `/v1/verifications/${id}` });
      expect(reply.statusCode).toBe(200);
      expect(reply.json()).toEqual({
        id,
        channel: "email",
        to: "a***@example.com",
        purpose: "sign_in",
        status: "pending",
        attempts_remaining: 4,
        expires_in: 500,
        deliveries: [
          {
            provider: "recording-email",
            status: "sent",
            at: "2026-01-01T12:00:00.000Z",
            provider_message_id: "rec-1",
          },
        ],
      });
    });

    it("reports every status value over a verification's life", async () => {
      t = await createTestServer(NO_CAPTCHA);
      const status = async (id: string) =>
        (await t.fastify.inject({ method: "GET", url: `/v1/verifications/${id}` })).json().status;
      const a = await issued({ to: "a@example.com" });
      expect(await status(a.id)).toBe("pending");
      await check(a.id, a.code);
      expect(await status(a.id)).toBe("approved");
      const b = await issued({ to: "b@example.com" });
      await t.fastify.inject({ method: "POST", url: `/v1/verifications/${b.id}/cancel` });
      expect(await status(b.id)).toBe("canceled");
      const c = await issued({ to: "c@example.com" });
      for (let i = 0; i < 5; i++) await check(c.id, wrongCode(c.code));
      expect(await status(c.id)).toBe("max_attempts_reached");
      const d = await issued({ to: "d@example.com" });
      t.clock.advanceSeconds(60);
      await issued({ to: "d@example.com" });
      expect(await status(d.id)).toBe("superseded");
      t.clock.advanceSeconds(600);
      const e = (await t.server.backend.db
        .prepare("SELECT id FROM codes WHERE recipient = 'd@example.com' AND status = 'pending'")
        .get()) as { id: string };
      expect(await status(e.id)).toBe("expired");
    });
  });
});

describe("POST /v1/verifications/{id}/cancel", () => {
  describe("200", () => {
    it("cancels a pending verification, and again", async () => {
      t = await createTestServer();
      const { id } = await issued();
      for (let i = 0; i < 2; i++) {
        const reply = await t.fastify.inject({ method: "POST", url: `/v1/verifications/${id}/cancel` });
        expect(reply.statusCode).toBe(200);
        expect(reply.json()).toEqual({ id, status: "canceled" });
      }
    });
  });

  describe("410", () => {
    it("refuses to cancel an approved verification with CODE_ALREADY_USED", async () => {
      t = await createTestServer();
      const { id, code } = await issued();
      await check(id, code);
      const reply = await t.fastify.inject({ method: "POST", url: `/v1/verifications/${id}/cancel` });
      expect(reply.statusCode).toBe(410);
      expect(reply.json().code).toBe("CODE_ALREADY_USED");
    });

    // Regression: the store used to cancel an expired code, hiding why it ended. @see issue 2
    it("refuses to cancel an expired verification with CODE_EXPIRED", async () => {
      t = await createTestServer();
      const { id } = await issued();
      t.clock.advanceSeconds(600);
      const reply = await t.fastify.inject({ method: "POST", url: `/v1/verifications/${id}/cancel` });
      expect(reply.statusCode).toBe(410);
      expect(reply.json().code).toBe("CODE_EXPIRED");
    });
  });
});

describe("POST /v1/tokens/redeem", () => {
  describe("200", () => {
    it("names the purpose the caller asked for among the token's", async () => {
      t = await createTestServer();
      const { id, code } = await issued({ purpose: "reset_password" });
      const { token } = (await check(id, code)).json();
      const reply = await t.fastify.inject({
        method: "POST",
        url: "/v1/tokens/redeem",
        payload: { token, purposes: ["sign_in", "reset_password"] },
      });
      expect(reply.statusCode).toBe(200);
      expect(reply.json()).toEqual({ channel: "email", to: ANN, purpose: "reset_password", app: "default" });
    });
  });

  describe("404", () => {
    it("refuses a token for another purpose without spending it", async () => {
      t = await createTestServer();
      const { id, code } = await issued();
      const { token } = (await check(id, code)).json();
      const wrong = await t.fastify.inject({
        method: "POST",
        url: "/v1/tokens/redeem",
        payload: { token, purposes: ["sign_up"] },
      });
      expect(wrong.statusCode).toBe(404);
      expect(wrong.json()).toMatchObject({ code: "TOKEN_INVALID", field: "token" });
      const right = await t.fastify.inject({ method: "POST", url: "/v1/tokens/redeem", payload: { token } });
      expect(right.statusCode).toBe(200);
    });

    it("refuses a token 600 s after approval", async () => {
      t = await createTestServer();
      const { id, code } = await issued();
      const { token } = (await check(id, code)).json();
      t.clock.advanceSeconds(600);
      const reply = await t.fastify.inject({ method: "POST", url: "/v1/tokens/redeem", payload: { token } });
      expect(reply.statusCode).toBe(404);
    });
  });
});

describe("apps are tenants", () => {
  it("keeps one app's verifications and tokens invisible to another", async () => {
    const keys = { a: "vk_test_app_a_0123456789abcdef", b: "vk_test_app_b_0123456789abcdef" };
    t = await createTestServer({
      env: { VERIFYD_MODE: "production", VERIFYD_SECRET: "production-secret-0123456789" },
      apps: [
        { id: "a", apiKeys: [keys.a] },
        { id: "b", apiKeys: [keys.b] },
      ],
    });
    const as = (app: "a" | "b") => ({ authorization: `Bearer ${keys[app]}` });
    const sent = await sendCode({}, as("a"));
    expect(sent.statusCode).toBe(201);
    const { id } = sent.json();
    await t.deliverAll();
    const code = t.email.lastCodeFor(ANN) as string;
    const get = await t.fastify.inject({ method: "GET", url: `/v1/verifications/${id}`, headers: as("b") });
    expect(get.statusCode).toBe(404);
    const foreign = await t.fastify.inject({
      method: "POST",
      url: CHECK,
      payload: { id, code },
      headers: as("b"),
    });
    expect(foreign.statusCode).toBe(404);
    // b's own send to the same recipient is not held back by a's resend window
    expect((await sendCode({}, as("b"))).statusCode).toBe(201);
    const approved = await t.fastify.inject({
      method: "POST",
      url: CHECK,
      payload: { id, code },
      headers: as("a"),
    });
    expect(approved.statusCode).toBe(200);
    const { token } = approved.json();
    const redeemB = await t.fastify.inject({
      method: "POST",
      url: "/v1/tokens/redeem",
      payload: { token },
      headers: as("b"),
    });
    expect(redeemB.statusCode).toBe(404);
    const redeemA = await t.fastify.inject({
      method: "POST",
      url: "/v1/tokens/redeem",
      payload: { token },
      headers: as("a"),
    });
    expect(redeemA.json().app).toBe("a");
  });

  it("refuses every call of a disabled default app's keyless callers (dev mode), not only its sends", async () => {
    t = await createTestServer();
    const sent = await sendCode();
    await t.deliverAll();
    const code = t.email.lastCodeFor(ANN) as string;
    const stored = await t.engine.apps.stored("default");
    await t.engine.apps.save({ ...stored!, disabled: true });
    const { id } = sent.json();
    const calls = [
      sendCode({ to: "bob@example.com" }),
      t.fastify.inject({ method: "POST", url: CHECK, payload: { id, code } }),
      t.fastify.inject({ method: "GET", url: `/v1/verifications/${id}` }),
      t.fastify.inject({ method: "POST", url: `/v1/verifications/${id}/cancel` }),
      t.fastify.inject({ method: "POST", url: "/v1/tokens/redeem", payload: { token: "vt_whatever" } }),
    ];
    for (const answer of await Promise.all(calls)) {
      expect(answer.statusCode, answer.body).toBe(403);
      expect(answer.json().code).toBe("APP_DISABLED");
    }
  });
});

describe("CORS", () => {
  const preflight = (origin: string) =>
    t.fastify.inject({
      method: "OPTIONS",
      url: SEND,
      headers: {
        origin,
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type",
      },
    });

  it("answers preflights for an app's configured origins only in production", async () => {
    t = await createTestServer({
      env: { VERIFYD_MODE: "production", VERIFYD_SECRET: "production-secret-0123456789" },
      apps: [
        { id: "shop", apiKeys: ["vk_test_shop_0123456789abcdef"], corsOrigins: ["https://shop.example"] },
        { id: "closed", disabled: true, corsOrigins: ["https://closed.example"] },
      ],
    });
    const allowed = await preflight("https://shop.example");
    expect(allowed.statusCode).toBe(204);
    expect(allowed.headers["access-control-allow-origin"]).toBe("https://shop.example");
    expect(String(allowed.headers["access-control-allow-headers"])).toMatch(/content-type/i);
    const foreign = await preflight("https://evil.example");
    expect(foreign.headers["access-control-allow-origin"]).toBeUndefined();
    // a disabled app's pages may no longer call verifyd either
    const closed = await preflight("https://closed.example");
    expect(closed.headers["access-control-allow-origin"]).toBeUndefined();
  });

  it("answers preflights from any origin in dev mode", async () => {
    t = await createTestServer();
    const reply = await preflight("http://localhost:5173");
    expect(reply.headers["access-control-allow-origin"]).toBe("http://localhost:5173");
  });

  // Regression: answered 400 "Invalid Preflight Request" as text/plain, no face's error shape.
  // @see .scratch/badinput F4
  it("answers an OPTIONS that is no preflight on every face with 204 and the methods allowed", async () => {
    t = await createTestServer();
    for (const url of [
      SEND,
      "/api/v2/common/send-verify-code",
      "/auth/v1/verification",
      "/api/v2/sdk/email/send",
    ]) {
      const reply = await t.fastify.inject({ method: "OPTIONS", url });
      expect(reply.statusCode, `${url}: ${reply.body}`).toBe(204);
      expect(reply.body).toBe("");
      expect(String(reply.headers["access-control-allow-methods"])).toContain("POST");
    }
  });

  it("allows the methods the faces use: Fresns PUT and DELETE, CloudBase PATCH", async () => {
    t = await createTestServer();
    for (const method of ["PUT", "DELETE", "PATCH"]) {
      const reply = await t.fastify.inject({
        method: "OPTIONS",
        url: "/api/v2/account/edit",
        headers: { origin: "http://localhost:5173", "access-control-request-method": method },
      });
      expect(reply.statusCode).toBe(204);
      expect(String(reply.headers["access-control-allow-methods"]).split(/,\s*/)).toContain(method);
    }
  });
});
