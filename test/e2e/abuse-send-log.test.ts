/**
 * Issue 3, "Send log": every send decision is recorded with app, face, channel, masked recipient,
 * country, IP, time and reason, and never the recipient in clear (`@see issue 3`).
 */
import { afterEach, describe, expect, it } from "vitest";
import type { SendLogEntry } from "../../src/core/ports.js";
import { createTestServer, type TestServer } from "../harness.js";

let t: TestServer;
afterEach(async () => {
  await t?.close();
});

const SHOP_KEY = "shop-api-key-0123456789abcdef";

async function send(
  payload: Record<string, unknown>,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await t.fastify.inject({
    method: "POST",
    url: "/v1/verifications",
    headers,
    payload: { purpose: "sign_in", ...payload },
  });
  return { status: response.statusCode, body: response.json() };
}

describe("send log", () => {
  it("records accepted, rate_limited, captcha_required, denied and captcha_failed decisions", async () => {
    t = await createTestServer({ env: { VERIFYD_TRUST_PROXY: "127.0.0.1" } });
    const bot = { "x-forwarded-for": "198.51.100.7" };
    const at = t.clock.nowMs();

    const first = await send({ channel: "email", to: "Ann@Example.com" }, bot);
    expect(first.status).toBe(201);
    expect((await send({ channel: "email", to: "Ann@Example.com" }, bot)).status).toBe(429);
    t.clock.advanceSeconds(1);
    const sms = await send({ channel: "sms", to: "13800138000" }, bot);
    expect(sms.status).toBe(201);
    expect((await send({ channel: "email", to: "carl@example.com" }, bot)).status).toBe(201);
    expect((await send({ channel: "email", to: "dora@example.com" }, bot)).status).toBe(428);
    t.clock.advanceSeconds(1);
    expect(
      (await send({ channel: "sms", to: "+2348031234567" }, { "x-forwarded-for": "203.0.113.9" })).status,
    ).toBe(403);
    const failed = await send(
      { channel: "email", to: "eve@example.com" },
      { "x-forwarded-for": "203.0.113.9", "x-captcha-token": "cp_forged" },
    );
    expect(failed.status).toBe(400);

    const entries = (await t.server.backend.sendLog.query({ appId: "default", limit: 100 })).reverse();
    const base = { appId: "default", face: "native", purpose: "sign_in" };
    expect(entries).toEqual<SendLogEntry[]>([
      {
        ...base,
        atMs: at,
        channel: "email",
        to: "A***@example.com",
        ip: "198.51.100.7",
        decision: "accepted",
        verificationId: first.body.id as string,
      },
      {
        ...base,
        atMs: at,
        channel: "email",
        to: "A***@example.com",
        ip: "198.51.100.7",
        decision: "rate_limited",
        reason: "recipient:1/60s",
      },
      {
        ...base,
        atMs: at + 1000,
        channel: "sms",
        to: "+86*********00",
        country: "CN",
        ip: "198.51.100.7",
        decision: "accepted",
        verificationId: sms.body.id as string,
      },
      expect.objectContaining({ decision: "accepted", to: "c***@example.com" }),
      // Over its risk budget, the bot is refused before its request is read: no channel, recipient
      // or purpose to record.
      {
        atMs: at + 1000,
        appId: "default",
        face: "native",
        ip: "198.51.100.7",
        decision: "captcha_required",
        reason: "risk_ip:3/600s",
      },
      {
        ...base,
        atMs: at + 2000,
        channel: "sms",
        to: "+23*********67",
        country: "NG",
        ip: "203.0.113.9",
        decision: "denied",
        reason: "country_not_allowed:NG",
      },
      {
        ...base,
        atMs: at + 2000,
        channel: "email",
        to: "e***@example.com",
        ip: "203.0.113.9",
        decision: "captcha_failed",
        reason: "The captcha token is invalid, expired or already used",
      },
    ]);

    // the recipients themselves are never written
    const rows = JSON.stringify(t.server.backend.db.prepare("SELECT * FROM send_log").all());
    for (const raw of ["Ann@Example.com", "Ann@example.com", "+8613800138000", "+2348031234567", "dora@"]) {
      expect(rows).not.toContain(raw);
    }
  });

  // Regression: a made-up captcha token, or a fresh Idempotency-Key, took a refusal past the check
  // before the body is read, and each one then wrote a row of its own, kept 30 days.
  // @see .scratch/abuse F3
  it("keeps a client's repeated refusals about one recipient as one entry, and each accepted send", async () => {
    t = await createTestServer({ env: { VERIFYD_TRUST_PROXY: "127.0.0.1" } });
    const bot = { "x-forwarded-for": "198.51.100.7" };
    const bob = { channel: "email", to: "bob@example.com" };
    expect((await send({ channel: "email", to: "ann@example.com" }, bot)).status).toBe(201);
    expect((await send({ channel: "email", to: "amy@example.com" }, bot)).status).toBe(201);
    for (let n = 0; n < 40; n++) {
      expect((await send(bob, { ...bot, "x-captcha-token": `cp_forged${n}` })).status).toBe(400);
    }
    expect((await send({ channel: "email", to: "bea@example.com" }, bot)).status).toBe(201);
    for (let n = 0; n < 40; n++) {
      expect((await send(bob, { ...bot, "idempotency-key": `key-${n}` })).status).toBe(428);
    }

    const entries = (await t.server.backend.sendLog.query({ appId: "default", limit: 100 })).reverse();
    expect(entries.map((entry) => [entry.decision, entry.to, entry.reason, entry.count ?? 1])).toEqual([
      ["accepted", "a***@example.com", undefined, 1],
      ["accepted", "a***@example.com", undefined, 1],
      ["captcha_failed", "b***@example.com", "The captcha token is invalid, expired or already used", 40],
      ["accepted", "b***@example.com", undefined, 1],
      ["captcha_required", "b***@example.com", "risk_ip:3/600s", 40],
    ]);
  });

  // Regression: a client rotating recipients with a made-up captcha token (or past its own per-IP
  // limit) still wrote a row per request: the refusals were alike but for their recipient.
  it("keeps a client's refusals about itself as one entry whatever the recipient", async () => {
    t = await createTestServer({ env: { VERIFYD_TRUST_PROXY: "127.0.0.1" } });
    const bot = { "x-forwarded-for": "198.51.100.8" };
    for (let n = 0; n < 40; n++) {
      // (masked, each starts the log's spelling with its own letter)
      const to = { channel: "email", to: `${String.fromCharCode(97 + (n % 26))}victim${n}@example.com` };
      expect((await send(to, { ...bot, "x-captcha-token": `cp_forged${n}` })).status).toBe(400);
    }
    const entries = await t.server.backend.sendLog.query({ appId: "default", limit: 100 });
    expect(entries.map((entry) => [entry.decision, entry.to, entry.count ?? 1])).toEqual([
      ["captcha_failed", undefined, 40],
    ]);
  });

  it("files an API-key caller's decisions under its app, with its device", async () => {
    t = await createTestServer({ apps: [{ id: "shop", apiKeys: [SHOP_KEY] }] });
    const auth = { authorization: `Bearer ${SHOP_KEY}` };
    await send(
      { channel: "email", to: "ann@example.com", client_ip: "203.0.113.5", device_id: "dev-9" },
      auth,
    );
    expect(await t.server.backend.sendLog.query({ appId: "default", limit: 10 })).toEqual([]);
    const [entry] = await t.server.backend.sendLog.query({ appId: "shop", limit: 10 });
    expect(entry).toMatchObject({
      appId: "shop",
      ip: "203.0.113.5",
      deviceId: "dev-9",
      decision: "accepted",
    });
  });

  it("records what shadow mode let through", async () => {
    t = await createTestServer({ apps: [{ id: "default", abuse: { pumping: { shadow: true } } }] });
    expect((await send({ channel: "sms", to: "+2348031234567" })).status).toBe(201);
    const [entry] = await t.server.backend.sendLog.query({
      appId: "default",
      decision: "accepted",
      limit: 10,
    });
    expect(entry).toMatchObject({ country: "NG", shadowed: ["country_not_allowed:NG"] });
  });
});
