import { afterEach, describe, expect, it } from "vitest";
import { createTestServer, type TestServer } from "../harness.js";
import { type SmsHttpStub, startSmsHttpStub } from "../servers/sms-http-stub.js";
import { deliveriesOf } from "./verification-view.js";

/**
 * Issue 7 routing and failover, through the real configuration (`providers`, `routing`,
 * `delivery`), the real webhook senders and loopback HTTP stubs, under a fixed clock: backoffs and
 * the breaker's cool-down pass only when the test moves the clock.
 */

const SECRET = "whsec_failover_0123456789";
const API_KEY = "vk_delivery_failover_key_0123456789";

let t: TestServer | undefined;
const stubs: SmsHttpStub[] = [];
afterEach(async () => {
  await t?.close();
  t = undefined;
  for (const stub of stubs.splice(0)) await stub.close();
});

async function stub(): Promise<SmsHttpStub> {
  const started = await startSmsHttpStub({ status: 200, json: {} });
  stubs.push(started);
  return started;
}

interface Setup {
  routing?: Record<string, string[]>;
  delivery?: Record<string, unknown>;
  timeoutMs?: number;
}

/** Two webhook SMS providers, "primary" and "secondary", each on its own stub. */
async function start(setup: Setup = {}) {
  const primary = await stub();
  const secondary = await stub();
  const webhook = (id: string, target: SmsHttpStub) => ({
    id,
    type: "webhook",
    url: `${target.url}/sms`,
    secret: SECRET,
    ...(setup.timeoutMs ? { timeoutMs: setup.timeoutMs } : {}),
  });
  t = await createTestServer({
    devSender: true,
    apps: [
      {
        id: "default",
        apiKeys: [API_KEY],
        abuse: { captcha: { native: "never" }, pumping: { safeList: ["+86", "+1"] } },
      },
    ],
    configFile: {
      providers: [webhook("primary", primary), webhook("secondary", secondary)],
      routing: setup.routing ?? { sms: ["primary", "secondary"] },
      delivery: setup.delivery ?? {
        triesPerProvider: 2,
        breaker: { failureThreshold: 2, coolDownSeconds: 30 },
      },
    },
  });
  return { server: t, primary, secondary };
}

async function send(server: TestServer, to: string): Promise<string> {
  const sent = await server.fastify.inject({
    method: "POST",
    url: "/v1/verifications",
    headers: { authorization: `Bearer ${API_KEY}` },
    payload: { channel: "sms", to, purpose: "sign_in" },
  });
  expect(sent.statusCode).toBe(201);
  return sent.json().id;
}

/** A verification's delivery records: provider and status, and with `withErrors` each error text. */
async function deliveries(
  server: TestServer,
  id: string,
  { withErrors = false } = {},
): Promise<{ provider: string; status: string; error?: string }[]> {
  type Delivery = { provider: string; status: string; error?: string };
  return (await deliveriesOf<Delivery>(server, id, API_KEY)).map((delivery) => ({
    provider: delivery.provider,
    status: delivery.status,
    ...(withErrors && delivery.error ? { error: delivery.error } : {}),
  }));
}

/** Recipients of the messages a stub accepted. */
const recipients = (target: SmsHttpStub) => target.requests.map((request) => JSON.parse(request.body).to);

describe("failover between providers", () => {
  it("retries the primary with backoff, then fails over; skips it while its circuit is open; uses it again after the probe", async () => {
    const { server, primary, secondary } = await start();
    primary.setFallback({ status: 503, json: { message: "down" } });

    // 1st message: primary fails, and is retried only after its backoff
    const first = await send(server, "+8613800000001");
    await server.deliverAll();
    expect(primary.requests).toHaveLength(1);
    expect(secondary.requests).toHaveLength(0);
    server.clock.advanceSeconds(1);
    // the second failure spends primary's tries (and opens its circuit); secondary goes at once
    await server.deliverAll();
    expect(primary.requests).toHaveLength(2);
    expect(recipients(secondary)).toEqual(["+8613800000001"]);
    expect(await deliveries(server, first)).toEqual([
      { provider: "primary", status: "failed" },
      { provider: "primary", status: "failed" },
      { provider: "secondary", status: "sent" },
    ]);

    // 2nd message: primary's circuit is open, so it is skipped without a try
    const second = await send(server, "+8613800000002");
    await server.deliverAll();
    expect(primary.requests).toHaveLength(2);
    expect(recipients(secondary)).toEqual(["+8613800000001", "+8613800000002"]);
    expect(await deliveries(server, second)).toEqual([{ provider: "secondary", status: "sent" }]);

    // primary comes back; after the cool-down one probe finds out, and it is primary again
    primary.setFallback({ status: 200, json: { id: "primary-ok" } });
    server.clock.advanceSeconds(10);
    await send(server, "+8613800000003");
    await server.deliverAll();
    expect(recipients(primary).slice(2)).toEqual([]);
    expect(recipients(secondary)).toHaveLength(3);

    server.clock.advanceSeconds(21);
    const probe = await send(server, "+8613800000004");
    await server.deliverAll();
    expect(recipients(primary).slice(2)).toEqual(["+8613800000004"]);
    expect(await deliveries(server, probe)).toEqual([{ provider: "primary", status: "sent" }]);

    await send(server, "+8613800000005");
    await server.deliverAll();
    expect(recipients(primary).slice(2)).toEqual(["+8613800000004", "+8613800000005"]);
    expect(recipients(secondary)).toHaveLength(3);
  });

  // Regression: a provider that took the request and answered after the timeout was retried and
  // failed over like one that never got it, so the code went out again on every try: a Twilio
  // answering in 11 s sent one code 8 times, two slow providers 3 times. Then (regression) such a
  // try was not failed over either, and a hanging primary lost every code until its breaker opened.
  it("never retries a try the primary took but never answered on the primary, and fails it over to the secondary", async () => {
    const { server, primary, secondary } = await start({
      timeoutMs: 200,
      delivery: { triesPerProvider: 2 },
    });
    primary.setFallback({ status: 200, json: {}, delayMs: 2_000 });
    const id = await send(server, "+8613800000011");
    await server.deliverAll();
    server.clock.advanceSeconds(120);
    await server.deliverAll();
    expect(recipients(primary)).toEqual(["+8613800000011"]);
    expect(recipients(secondary)).toEqual(["+8613800000011"]);
    expect(await deliveries(server, id, { withErrors: true })).toEqual([
      { provider: "primary", status: "unconfirmed", error: "primary: no answer within 200 ms" },
      { provider: "secondary", status: "sent" },
    ]);
    const metrics = await server.fastify.inject({ method: "GET", url: "/metrics" });
    expect(metrics.body).toMatch(
      /verifyd_deliveries_total\{channel="sms",provider="primary",outcome="unconfirmed"\} 1/,
    );
    expect(metrics.body).toMatch(
      /verifyd_deliveries_total\{channel="sms",provider="secondary",outcome="sent"\} 1/,
    );
  });

  // Regression: the reviewer's repro. gw accepted every request and never answered, gw2 answered
  // 200: none of 10 codes was delivered (all unconfirmed on gw, gw2 never tried).
  it("delivers every code through the secondary while the primary takes requests and never answers", async () => {
    const { server, primary, secondary } = await start({
      timeoutMs: 200,
      delivery: { triesPerProvider: 2, breaker: { failureThreshold: 5, coolDownSeconds: 30 } },
    });
    primary.setFallback({ status: 200, json: {}, delayMs: 2_000 });
    const numbers = Array.from({ length: 10 }, (_, index) => `+86138000001${String(index).padStart(2, "0")}`);
    for (const to of numbers) await send(server, to);
    await server.deliverAll();
    expect(recipients(secondary).sort()).toEqual(numbers);
    // Each code reached the primary at most once, and only until its breaker opened.
    expect(new Set(recipients(primary)).size).toBe(recipients(primary).length);
    expect(recipients(primary).length).toBeLessThanOrEqual(10);
  });

  it("sends a code at most once through each provider, and ends it unconfirmed when none is left", async () => {
    const { server, primary, secondary } = await start({
      timeoutMs: 200,
      delivery: { triesPerProvider: 2 },
    });
    primary.setFallback({ status: 200, json: {}, delayMs: 2_000 });
    secondary.setFallback({ status: 200, json: {}, delayMs: 2_000 });
    const id = await send(server, "+8613800000013");
    await server.deliverAll();
    server.clock.advanceSeconds(120);
    await server.deliverAll();
    expect(recipients(primary)).toEqual(["+8613800000013"]);
    expect(recipients(secondary)).toEqual(["+8613800000013"]);
    expect(await deliveries(server, id)).toEqual([
      { provider: "primary", status: "unconfirmed" },
      { provider: "secondary", status: "unconfirmed" },
    ]);
    const row = server.server.backend.db.prepare("SELECT status, sealed_code FROM outbox").get();
    expect(row).toEqual({ status: "failed", sealed_code: null });
  });

  it("fails over at once when the primary refuses the connection: nothing was sent", async () => {
    const { server, primary, secondary } = await start({ delivery: { triesPerProvider: 1 } });
    await primary.close();
    const id = await send(server, "+8613800000012");
    await server.deliverAll();
    expect(recipients(secondary)).toEqual(["+8613800000012"]);
    expect(await deliveries(server, id)).toEqual([
      { provider: "primary", status: "failed" },
      { provider: "secondary", status: "sent" },
    ]);
  });

  it("does not retry nor fail over a permanent refusal", async () => {
    const { server, primary, secondary } = await start();
    primary.setFallback({ status: 400, json: { message: "invalid number" } });
    const id = await send(server, "+8613800000021");
    await server.deliverAll();
    server.clock.advanceSeconds(120);
    await server.deliverAll();
    expect(primary.requests).toHaveLength(1);
    expect(secondary.requests).toHaveLength(0);
    expect(await deliveries(server, id)).toEqual([{ provider: "primary", status: "failed" }]);
    const row = server.server.backend.db.prepare("SELECT status, sealed_code FROM outbox").get();
    expect(row).toEqual({ status: "failed", sealed_code: null });
  });

  it("dead-letters a message no provider takes before its code expires", async () => {
    const { server, primary, secondary } = await start();
    primary.setFallback({ status: 500 });
    secondary.setFallback({ status: 502 });
    const id = await send(server, "+8613800000031");
    for (let elapsed = 0; elapsed <= 600; elapsed += 5) {
      await server.deliverAll();
      server.clock.advanceSeconds(5);
    }
    const row = server.server.backend.db.prepare("SELECT status, sealed_code FROM outbox").get();
    expect(row).toEqual({ status: "failed", sealed_code: null });
    const tries = await deliveries(server, id);
    expect(tries.every((delivery) => delivery.status === "failed")).toBe(true);
    expect(tries.map((delivery) => delivery.provider)).toEqual(
      expect.arrayContaining(["primary", "secondary"]),
    );
  });

  it("routes by destination country", async () => {
    const { server, primary, secondary } = await start({
      routing: { sms: ["primary"], "sms:CN": ["secondary"] },
    });
    await send(server, "+8613800000041");
    await send(server, "+14155550100");
    await server.deliverAll();
    expect(recipients(secondary)).toEqual(["+8613800000041"]);
    expect(recipients(primary)).toEqual(["+14155550100"]);
  });
});

// Regression: a webhook gateway answering 401 (verifyd's signature refused) was taken as the
// recipient refused, so every message failed at once, the backup behind it was never tried, and
// the gateway's breaker never opened. @see logs review 1
describe("a webhook gateway refusing verifyd's request", () => {
  const refusing = async (status: number) => {
    const started = await start({
      delivery: { triesPerProvider: 1, breaker: { failureThreshold: 2, coolDownSeconds: 30 } },
    });
    started.primary.setFallback({ status, json: { error: "refused" } });
    return started;
  };

  it.each([401, 403, 404])(
    "fails over on HTTP %i, and its breaker opens after repeated refusals",
    async (status) => {
      const { server, primary, secondary } = await refusing(status);

      const first = await send(server, "+14155550101");
      await server.deliverAll();
      expect(recipients(secondary)).toEqual(["+14155550101"]);
      expect(await deliveries(server, first, { withErrors: true })).toEqual([
        { provider: "primary", status: "failed", error: expect.stringContaining(`HTTP ${status} (`) },
        { provider: "secondary", status: "sent" },
      ]);

      // the second refusal reaches the threshold: the third message skips the gateway
      await send(server, "+14155550102");
      await server.deliverAll();
      await send(server, "+14155550103");
      await server.deliverAll();
      expect(primary.requests).toHaveLength(2);
      expect(recipients(secondary)).toEqual(["+14155550101", "+14155550102", "+14155550103"]);
    },
  );

  it("still takes HTTP 400 as the recipient refused: no failover, and the breaker stays closed", async () => {
    const { server, primary, secondary } = await refusing(400);

    for (const to of ["+14155550111", "+14155550112", "+14155550113"]) {
      const id = await send(server, to);
      await server.deliverAll();
      expect(await deliveries(server, id, { withErrors: true })).toEqual([
        { provider: "primary", status: "failed", error: "primary: HTTP 400" },
      ]);
    }
    expect(primary.requests).toHaveLength(3);
    expect(secondary.requests).toHaveLength(0);
  });
});
