/**
 * Issue 3, "Done means": the SMS-pumping guard end to end through the native API (`@see issue 3`).
 * Every send comes from its own /24 behind a trusted proxy, so the captcha risk rules (per IP and
 * subnet) and the per-IP rate rule never answer first: what refuses here is the guard alone.
 */
import type { LightMyRequestResponse } from "fastify";
import { afterEach, describe, expect, it } from "vitest";
import type { AppConfig } from "../../src/config/schema.js";
import { prefixBlockKey, prefixVerifiedKey } from "../../src/core/abuse/abuse-rules.js";
import type { SendDecision, SendLogEntry } from "../../src/core/ports.js";
import { recipientCounterKey } from "../../src/core/verification/keys.js";
import { createTestServer, type TestServer } from "../harness.js";

let t: TestServer;
let clients = 0;
afterEach(async () => {
  await t?.close();
});

type Pumping = NonNullable<NonNullable<AppConfig["abuse"]>["pumping"]>;

function open(pumping: Pumping = {}): Promise<TestServer> {
  clients = 0;
  return createTestServer({
    env: { VERIFYD_TRUST_PROXY: "127.0.0.1" },
    apps: [{ id: "default", abuse: { pumping } }],
  });
}

/** The premium prefix under attack (+44 740…) and ordinary traffic elsewhere. */
const attacked = (n: number) => `+447400${String(100_000 + n)}`;
const otherPrefix = (n: number) => `+447800${String(100_000 + n)}`;
const china = (n: number) => `+86138${String(10_000_000 + n)}`;
const usa = (n: number) => `+1201555${String(1000 + n).slice(-4)}`;
const NIGERIA = "+2348031234567";
/** A Guernsey mobile: +44 like Great Britain, but another region (a classic pumping decoy). */
const GUERNSEY = "+447911123456";
/** A Jamaican mobile: +1 like the US, but another region. */
const JAMAICA = "+18762101234";

function sendSms(
  to: string,
  extra: { headers?: Record<string, string> } = {},
): Promise<LightMyRequestResponse> {
  clients += 1;
  // a fresh /24 for every request: 10.<hi>.<lo>.7
  const ip = `10.${Math.floor(clients / 256)}.${clients % 256}.7`;
  return t.fastify.inject({
    method: "POST",
    url: "/v1/verifications",
    headers: { "x-forwarded-for": ip, ...extra.headers },
    payload: { channel: "sms", to, purpose: "sign_in" },
  });
}

function expectDenied(response: LightMyRequestResponse): void {
  expect(response.statusCode).toBe(403);
  expect(response.headers["content-type"]).toMatch(/^application\/problem\+json/);
  expect(response.json()).toMatchObject({ status: 403, code: "PUMPING_DENIED" });
}

async function sendLog(decision?: SendDecision): Promise<SendLogEntry[]> {
  return t.server.backend.sendLog.query({ appId: "default", limit: 1000, ...(decision ? { decision } : {}) });
}

function outboxRows(): number {
  return (t.server.backend.db.prepare("SELECT count(*) AS n FROM outbox").get() as { n: number }).n;
}

/** Lets the pumping watch's detector (scheduled after the response with a zero timeout) finish. */
async function detectorRound(): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, 0));
  await new Promise((resolve) => setImmediate(resolve));
}

describe("prefix budget", () => {
  it("blocks an attack on one premium prefix after its budget while other traffic continues", async () => {
    t = await open({ perPrefix: [{ limit: 5, windowSeconds: 3600 }] });
    for (let n = 1; n <= 5; n++) expect((await sendSms(attacked(n))).statusCode).toBe(201);
    // interleaved normal traffic, each destination within its own budget: another UK prefix,
    // China and the US
    const normal = [otherPrefix, china, usa];
    for (let n = 6; n <= 20; n++) {
      const refused = await sendSms(attacked(n));
      expectDenied(refused);
      expect(refused.json().retry_after).toBe(3600);
      expect(refused.headers["retry-after"]).toBe("3600");
      expect((await sendSms((normal[n % 3] as (n: number) => string)(n))).statusCode).toBe(201);
    }
    expect(outboxRows()).toBe(5 + 15);
    const denials = await sendLog("denied");
    expect(denials).toHaveLength(15);
    expect(denials[0]).toMatchObject({ channel: "sms", country: "GB", reason: "sms_prefix_+44740:5/3600s" });
    // a refused number was not counted against its own budget either
    const counted = await t.server.backend.counters.peek(
      "default",
      recipientCounterKey("sms", attacked(6), 60),
      t.clock.nowMs(),
    );
    expect(counted.count).toBe(0);

    // the budget's window ends, and the prefix may send again
    t.clock.advanceSeconds(3600);
    expect((await sendSms(attacked(31))).statusCode).toBe(201);
  });

  it("budgets per country", async () => {
    t = await open({ perCountry: [{ limit: 3, windowSeconds: 3600 }] });
    for (let n = 1; n <= 3; n++)
      expect((await sendSms(n % 2 ? attacked(n) : otherPrefix(n))).statusCode).toBe(201);
    expectDenied(await sendSms(otherPrefix(4)));
    expect((await sendSms(china(1))).statusCode).toBe(201);
    const [denial] = await sendLog("denied");
    expect(denial?.reason).toBe("sms_country_GB:3/3600s");
  });

  it("keeps a global daily SMS budget, leaving email alone", async () => {
    t = await open({ dailyBudget: 3 });
    expect((await sendSms(attacked(1))).statusCode).toBe(201);
    expect((await sendSms(china(1))).statusCode).toBe(201);
    expect((await sendSms(usa(1))).statusCode).toBe(201);
    const refused = await sendSms(china(2));
    expectDenied(refused);
    expect(refused.json().retry_after).toBe(86_400);
    const email = await t.fastify.inject({
      method: "POST",
      url: "/v1/verifications",
      payload: { channel: "email", to: "ann@example.com", purpose: "sign_in" },
    });
    expect(email.statusCode).toBe(201);
    const [denial] = await sendLog("denied");
    expect(denial?.reason).toBe("sms_daily_budget:3/86400s");
    t.clock.advanceSeconds(86_400);
    expect((await sendSms(china(2))).statusCode).toBe(201);
  });
});

describe("country allow and deny lists", () => {
  it("allows only the default markets: Nigeria, Guernsey and Jamaica are refused, China and the US are not", async () => {
    t = await open();
    const nigeria = await sendSms(NIGERIA);
    expectDenied(nigeria);
    // the detail says what to widen (abuse.pumping.allowCountries)
    expect(nigeria.json().detail).toBe("SMS to this country (NG) is not allowed");
    expectDenied(await sendSms(GUERNSEY));
    expectDenied(await sendSms(JAMAICA));
    expect((await sendSms(china(1))).statusCode).toBe(201);
    expect((await sendSms(usa(1))).statusCode).toBe(201);
    expect((await sendSms(attacked(1))).statusCode).toBe(201);
    const reasons = (await sendLog("denied")).map((entry) => entry.reason).sort();
    expect(reasons).toEqual(["country_not_allowed:GG", "country_not_allowed:JM", "country_not_allowed:NG"]);
    expect(outboxRows()).toBe(3);
  });

  it("denies a listed country even when every other region is allowed", async () => {
    t = await open({ allowCountries: ["*"], denyCountries: ["NG", "CN"] });
    expectDenied(await sendSms(NIGERIA));
    expectDenied(await sendSms(china(1)));
    expect((await sendSms(GUERNSEY)).statusCode).toBe(201);
    expect((await sendSms("+37061234567")).statusCode).toBe(201);
    expect((await sendLog("denied")).map((entry) => entry.reason).sort()).toEqual([
      "country_denied:CN",
      "country_denied:NG",
    ]);
  });

  it("narrows the allow list to the regions an app names", async () => {
    t = await open({ allowCountries: ["US"] });
    expect((await sendSms(usa(1))).statusCode).toBe(201);
    expectDenied(await sendSms(china(1)));
    expectDenied(await sendSms(attacked(1)));
  });

  it("exempts safe-listed numbers and prefixes from every rule of the guard", async () => {
    t = await open({
      safeList: [NIGERIA, "+447400"],
      perPrefix: [{ limit: 1, windowSeconds: 3600 }],
      dailyBudget: 2,
    });
    expect((await sendSms(NIGERIA)).statusCode).toBe(201);
    expectDenied(await sendSms("+2348031234568"));
    for (let n = 1; n <= 5; n++) expect((await sendSms(attacked(n))).statusCode).toBe(201);
    // even a standing automatic block of the prefix
    await t.server.backend.counters.hit("default", prefixBlockKey("+44740"), 3600, t.clock.nowMs());
    expect((await sendSms(attacked(6))).statusCode).toBe(201);
    // the budgets still bind everyone else (and the safe list's sends took none of the daily two)
    expect((await sendSms(otherPrefix(1))).statusCode).toBe(201);
    expectDenied(await sendSms(otherPrefix(2)));
    expect((await sendSms(china(1))).statusCode).toBe(201);
    expectDenied(await sendSms(usa(1)));
    expect((await sendLog("denied")).map((entry) => entry.reason)).toEqual([
      "sms_daily_budget:2/86400s",
      "sms_prefix_+44780:1/3600s",
      "country_not_allowed:NG",
    ]);
  });
});

describe("kinds of number", () => {
  /** Premium-rate lines in allowed markets (US, GB, FR): each SMS sent there pays its owner. */
  const PREMIUM = ["+19005550123", "+449098790123", "+448712345678", "+33899123456"];

  it("refuses premium-rate, shared-cost, pager and UAN numbers in allowed markets, as a disallowed country", async () => {
    t = await open();
    for (const number of [...PREMIUM, "+33810123456", "+447640123456", "+445512345678"]) {
      const denied = await sendSms(number);
      expectDenied(denied);
      if (number === "+447640123456") {
        expect(denied.json().detail).toBe("SMS to this kind of number (PAGER) is not allowed");
      }
    }
    // fixed lines, toll-free, VoIP, mobiles and the US's fixed-or-mobile numbers get their SMS
    for (const number of ["+441212345678", "+18005550123", "+33912345678", "+33612345678", "+12025550123"]) {
      expect((await sendSms(number)).statusCode).toBe(201);
    }
    expect(outboxRows()).toBe(5);
    const denials = (await sendLog("denied")).reverse();
    expect(denials.map((entry) => [entry.country, entry.reason])).toEqual([
      ["US", "number_type_denied:PREMIUM_RATE"],
      ["GB", "number_type_denied:PREMIUM_RATE"],
      ["GB", "number_type_denied:PREMIUM_RATE"],
      ["FR", "number_type_denied:PREMIUM_RATE"],
      ["FR", "number_type_denied:SHARED_COST"],
      ["GB", "number_type_denied:PAGER"],
      ["GB", "number_type_denied:UAN"],
    ]);
    expect(denials[0]).toMatchObject({ channel: "sms", decision: "denied" });
  });

  it("refuses the kinds an app lists instead of the default ones", async () => {
    t = await open({ denyNumberTypes: ["VOIP"] });
    expectDenied(await sendSms("+33912345678"));
    expect((await sendSms(PREMIUM[0] as string)).statusCode).toBe(201);
    expect((await sendLog("denied")).map((entry) => entry.reason)).toEqual(["number_type_denied:VOIP"]);
  });

  it("exempts safe-listed numbers, and only notes the kind in shadow mode", async () => {
    t = await open({ safeList: [PREMIUM[0] as string] });
    expect((await sendSms(PREMIUM[0] as string)).statusCode).toBe(201);
    expectDenied(await sendSms(PREMIUM[1] as string));
    await t.close();

    t = await open({ shadow: true });
    expect((await sendSms(PREMIUM[1] as string)).statusCode).toBe(201);
    expect(await sendLog("denied")).toEqual([]);
    const [accepted] = await sendLog("accepted");
    expect(accepted?.shadowed).toEqual(["number_type_denied:PREMIUM_RATE"]);
  });
});

describe("shadow mode", () => {
  it("records what it would have blocked and blocks nothing", async () => {
    t = await open({ shadow: true, perPrefix: [{ limit: 2, windowSeconds: 3600 }], dailyBudget: 4 });
    for (let n = 1; n <= 5; n++) expect((await sendSms(attacked(n))).statusCode).toBe(201);
    expect((await sendSms(NIGERIA)).statusCode).toBe(201);
    await t.server.backend.counters.hit("default", prefixBlockKey("+86138"), 3600, t.clock.nowMs());
    expect((await sendSms(china(1))).statusCode).toBe(201);
    expect(outboxRows()).toBe(7);

    expect(await sendLog("denied")).toEqual([]);
    const accepted = (await sendLog("accepted")).reverse();
    expect(accepted.map((entry) => entry.shadowed)).toEqual([
      undefined,
      undefined,
      ["sms_prefix_+44740:2/3600s"],
      ["sms_prefix_+44740:2/3600s"],
      ["sms_prefix_+44740:2/3600s", "sms_daily_budget:4/86400s"],
      ["country_not_allowed:NG", "sms_daily_budget:4/86400s"],
      ["sms_prefix_blocked:+86138", "sms_daily_budget:4/86400s"],
    ]);
  });
});

describe("automatic prefix block (anomaly detector, off the request path)", () => {
  const spike = { minHourlySends: 20, spikeFactor: 5, maxVerifiedRatio: 0.2, blockSeconds: 6 * 3600 };

  it("blocks a prefix whose hourly sends spike while nobody verifies them", async () => {
    t = await open({ anomaly: spike });
    for (let n = 1; n <= 20; n++) expect((await sendSms(attacked(n))).statusCode).toBe(201);
    // the watch looks at most once per 5 s per prefix: the next send after that triggers a look
    t.clock.advanceSeconds(5);
    expect((await sendSms(attacked(21))).statusCode).toBe(201);
    await detectorRound();

    const blocked = await sendSms(attacked(22));
    expectDenied(blocked);
    // the block stands for blockSeconds from the detector's look
    expect(blocked.json().retry_after).toBe(6 * 3600);
    const [denial] = await sendLog("denied");
    expect(denial?.reason).toBe("sms_prefix_blocked:+44740");
    // other prefixes carry on
    expect((await sendSms(otherPrefix(1))).statusCode).toBe(201);
    expect((await sendSms(china(1))).statusCode).toBe(201);
    t.clock.advanceSeconds(6 * 3600 - 1);
    expectDenied(await sendSms(attacked(23)));
    t.clock.advanceSeconds(1);
    expect((await sendSms(attacked(24))).statusCode).toBe(201);
  });

  it("does not block a busy prefix whose codes get verified", async () => {
    t = await open({ anomaly: spike });
    const ids: string[] = [];
    for (let n = 1; n <= 20; n++) {
      const sent = await sendSms(attacked(n));
      expect(sent.statusCode).toBe(201);
      ids.push(sent.json().id);
    }
    await t.deliverAll();
    // 5 of 21 verified (24 %) is above the 20 % that marks pumping
    for (let n = 1; n <= 5; n++) {
      const checked = await t.fastify.inject({
        method: "POST",
        url: "/v1/verifications/check",
        payload: { id: ids[n - 1], code: t.sms.lastCodeFor(attacked(n)) },
      });
      expect(checked.statusCode).toBe(200);
    }
    // each approved SMS counted for its prefix: the detector's proof the traffic is real
    const verifiedCount = await t.server.backend.counters.peek(
      "default",
      prefixVerifiedKey("+44740"),
      t.clock.nowMs(),
    );
    expect(verifiedCount.count).toBe(5);
    t.clock.advanceSeconds(5);
    expect((await sendSms(attacked(21))).statusCode).toBe(201);
    await detectorRound();
    expect((await sendSms(attacked(22))).statusCode).toBe(201);
    expect(await sendLog("denied")).toEqual([]);
  });

  it("keeps watching when an app budgets its prefixes by the hour only", async () => {
    t = await open({ perPrefix: [{ limit: 1000, windowSeconds: 3600 }], anomaly: spike });
    for (let n = 1; n <= 20; n++) expect((await sendSms(attacked(n))).statusCode).toBe(201);
    t.clock.advanceSeconds(5);
    expect((await sendSms(attacked(21))).statusCode).toBe(201);
    await detectorRound();
    expectDenied(await sendSms(attacked(22)));
  });

  it("does nothing when the detector is switched off", async () => {
    t = await open({ anomaly: { ...spike, enabled: false } });
    for (let n = 1; n <= 20; n++) await sendSms(attacked(n));
    t.clock.advanceSeconds(5);
    await sendSms(attacked(21));
    await detectorRound();
    expect((await sendSms(attacked(22))).statusCode).toBe(201);
  });
});
