/**
 * The SMS-pumping guard's prefix and country rules are shared by everyone who sends there: here,
 * end to end over HTTP in each mode, an attacker's sends to new numbers use them up, and a number
 * whose code was approved before still gets its code while new numbers stay refused.
 */
import type { LightMyRequestResponse } from "fastify";
import { afterEach, describe, expect, it } from "vitest";
import {
  type ClusterTestServer,
  createTestServer,
  modesToTest,
  type TestServer,
} from "../../../test/harness.js";
import type { AppConfig } from "../../config/schema.js";
import { prefixBlockKey } from "./abuse-rules.js";

const MODES = await modesToTest("SMS to known numbers past the pumping guard");

type Pumping = NonNullable<NonNullable<AppConfig["abuse"]>["pumping"]>;

let t: TestServer | ClusterTestServer | undefined;
afterEach(async () => {
  await t?.close();
  t = undefined;
});

/** A +86 138 mobile: the prefix under attack (+86138, a whole operator's range). */
const attacked = (n: number) => `138${String(10_000_000 + n)}`;
/** Ann's number, on the same prefix, and Bob's, on another +86 prefix. */
const ANN = "13800000001";
const BOB = "13900000002";
const e164 = (national: string) => `+86${national}`;

describe.each(MODES)("a known number past the pumping guard ($mode)", ({ cluster }) => {
  const server = () => {
    if (!t) throw new Error("open() first");
    return t;
  };

  async function open(pumping: Pumping = {}): Promise<void> {
    const apps = [{ id: "default", abuse: { pumping } }];
    t = cluster ? await createTestServer({ cluster, apps }) : await createTestServer({ apps });
  }

  let clients = 0;
  /** A fresh client address: no per-IP or risk rule answers first unless the test means it to. */
  const freshIp = () => {
    clients += 1;
    return `10.${(clients >> 8) & 255}.${clients & 255}.7`;
  };

  /** A Fresns send (no captcha step by default), as the attacker's. */
  function fresnsSend(national: string, ip = freshIp()): Promise<LightMyRequestResponse> {
    return server().fastify.inject({
      method: "POST",
      url: "/api/v2/common/send-verify-code",
      remoteAddress: ip,
      payload: { type: "sms", useType: 5, templateId: 7, account: national, countryCode: 86 },
    });
  }

  function nativeSend(
    national: string,
    headers: Record<string, string> = {},
  ): Promise<LightMyRequestResponse> {
    return server().fastify.inject({
      method: "POST",
      url: "/v1/verifications",
      remoteAddress: freshIp(),
      headers,
      payload: { channel: "sms", to: e164(national), purpose: "sign_in" },
    });
  }

  /** The number's owner gets a code and has it approved (native API). */
  async function verify(national: string): Promise<void> {
    const sent = await nativeSend(national);
    expect(sent.statusCode, sent.body).toBe(201);
    await server().deliverAll();
    const checked = await server().fastify.inject({
      method: "POST",
      url: "/v1/verifications/check",
      payload: { id: sent.json().id, code: server().sms.lastCodeFor(e164(national)) },
    });
    expect(checked.statusCode, checked.body).toBe(200);
  }

  const fresnsCode = (response: LightMyRequestResponse) => (response.json() as { code: number }).code;

  /** Fresns sends to new numbers of the attacked prefix, 10 per address (the per-IP rule). */
  async function attack(from: number, to: number): Promise<void> {
    let ip = freshIp();
    for (let n = from; n <= to; n++) {
      if ((n - from) % 10 === 0) ip = freshIp();
      expect(fresnsCode(await fresnsSend(attacked(n), ip))).toBe(0);
    }
  }

  /** Waits for the pumping watch (run after a response, off the request path) to block the prefix. */
  async function prefixBlocked(prefix: string): Promise<boolean> {
    for (let tries = 0; tries < 200; tries++) {
      const block = await server().server.backend.counters.peek(
        "default",
        prefixBlockKey(prefix),
        server().clock.nowMs(),
      );
      if (block.count > 0) return true;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    return false;
  }

  async function deliveredTo(national: string): Promise<number> {
    await server().deliverAll();
    return server().sms.messages.filter((message) => message.to === e164(national)).length;
  }

  it("sends to a number verified earlier through a prefix's automatic block, not to a new one", async () => {
    await open();
    await verify(ANN);
    // 49 unverified sends to new numbers of the prefix; the watch looks again 5 s on
    await attack(1, 48);
    server().clock.advanceSeconds(5);
    await attack(49, 49);
    expect(await prefixBlocked("+86138")).toBe(true);
    server().clock.advanceSeconds(60); // Ann's own resend wait

    // a new number of the prefix is refused (Fresns 34103: SMS there is not allowed)...
    expect(fresnsCode(await fresnsSend(attacked(50)))).toBe(34103);
    // ...Ann, whose code was approved, gets hers, on this face and on another
    expect(fresnsCode(await fresnsSend(ANN))).toBe(0);
    expect(await deliveredTo(ANN)).toBe(2);
    server().clock.advanceSeconds(60);
    expect((await nativeSend(ANN)).statusCode).toBe(201);
    expect(await deliveredTo(ANN)).toBe(3);
    // and the refused number is refused still, on any face
    const refused = await nativeSend(attacked(51));
    expect(refused.statusCode).toBe(403);
    expect(refused.json()).toMatchObject({ code: "PUMPING_DENIED" });

    // the send log tells which sends were let past the block, and why
    const log = await server().server.backend.sendLog.query({ appId: "default", limit: 100 });
    const waived = log.filter((entry) => entry.shadowed?.includes("known_number"));
    expect(waived.map((entry) => [entry.decision, entry.face])).toEqual([
      ["accepted", "native"],
      ["accepted", "fresns"],
    ]);
    for (const entry of waived) expect(entry.shadowed).toContain("sms_prefix_blocked:+86138");
  });

  it("sends to a known number past a prefix's budget and a country's", async () => {
    await open({
      perPrefix: [{ limit: 3, windowSeconds: 3600 }],
      perCountry: [{ limit: 6, windowSeconds: 3600 }],
    });
    await verify(ANN);
    server().clock.advanceSeconds(60); // Ann's own resend wait
    await attack(1, 2);
    // the prefix's budget is spent: a new number is refused, Ann is not
    expect(fresnsCode(await fresnsSend(attacked(3)))).toBe(34103);
    expect(fresnsCode(await fresnsSend(ANN))).toBe(0);
    // the country's: Bob, new and on another prefix, is refused; Ann is not
    for (const n of [1, 2]) expect(fresnsCode(await fresnsSend(`139${String(20_000_000 + n)}`))).toBe(0);
    expect(fresnsCode(await fresnsSend(BOB))).toBe(34103);
    server().clock.advanceSeconds(60);
    expect(fresnsCode(await fresnsSend(ANN))).toBe(0);
    expect(await deliveredTo(ANN)).toBe(3);
    // her sends were counted all the same
    const country = await server().server.backend.counters.peek(
      "default",
      "pump:cc:CN:3600",
      server().clock.nowMs(),
    );
    expect(country.count).toBe(7);
  });

  // Whoever reads the codes sent to numbers of their own can make them known, one approval each:
  // past the shared budgets, known numbers share budgets of the same sizes of their own.
  it("holds known numbers past a spent prefix budget to a budget of their own", async () => {
    await open({ perPrefix: [{ limit: 2, windowSeconds: 3600 }] });
    const [first, second] = [1, 2].map((n) => `138${String(30_000_000 + n)}`) as [string, string];
    // each verified once, which spends the shared budget
    await verify(first);
    await verify(second);
    server().clock.advanceSeconds(60);
    expect(fresnsCode(await fresnsSend(attacked(1)))).toBe(34103);
    // past it, the two known numbers' sends fill the known numbers' own budget of 2
    expect(fresnsCode(await fresnsSend(first))).toBe(0);
    expect(fresnsCode(await fresnsSend(second))).toBe(0);
    server().clock.advanceSeconds(60);
    expect(fresnsCode(await fresnsSend(first))).toBe(34103);
    const [denial] = await server().server.backend.sendLog.query({
      appId: "default",
      limit: 1,
      decision: "denied",
    });
    expect(denial?.reason).toBe("sms_known_prefix_+86138:2/3600s");
  });

  it("holds a known number to the app's daily budget, its operator's hard cap", async () => {
    await open({ perPrefix: [{ limit: 2, windowSeconds: 3600 }], dailyBudget: 2 });
    await verify(ANN);
    await attack(1, 1);
    server().clock.advanceSeconds(60);
    const refused = await nativeSend(ANN);
    expect(refused.statusCode).toBe(403);
    expect(refused.json()).toMatchObject({ code: "PUMPING_DENIED" });
    const [denial] = await server().server.backend.sendLog.query({
      appId: "default",
      limit: 1,
      decision: "denied",
    });
    expect(denial?.reason).toBe("sms_daily_budget:2/86400s");
  });

  it("answers a known number's retried send under one Idempotency-Key with its first answer", async () => {
    await open({ perPrefix: [{ limit: 2, windowSeconds: 3600 }] });
    await verify(ANN);
    await attack(1, 1);
    server().clock.advanceSeconds(60);
    const key = { "idempotency-key": "ann-retry-1" };
    const first = await nativeSend(ANN, key);
    expect(first.statusCode, first.body).toBe(201);
    const retried = await nativeSend(ANN, key);
    expect(retried.statusCode).toBe(201);
    expect(retried.json().id).toBe(first.json().id);
    expect(await deliveredTo(ANN)).toBe(2);
    // a new number's refusal is answered again as a refusal
    const other = { "idempotency-key": "new-number-1" };
    expect((await nativeSend(attacked(2), other)).statusCode).toBe(403);
    expect((await nativeSend(attacked(2), other)).statusCode).toBe(403);
  });

  it("remembers a number verified just before a 30-day period ends for 30 days", async () => {
    await open({ perPrefix: [{ limit: 1, windowSeconds: 3600 }] });
    const period = 30 * 86_400_000;
    server().clock.set((Math.floor(server().clock.nowMs() / period) + 1) * period - 1000);
    await verify(ANN);
    // 29 days on, in the next period
    server().clock.advanceSeconds(29 * 86_400);
    await attack(1, 1);
    expect(fresnsCode(await fresnsSend(attacked(2)))).toBe(34103);
    expect(fresnsCode(await fresnsSend(ANN))).toBe(0);
    // 60 days on, a number not verified since is a new number again
    server().clock.advanceSeconds(31 * 86_400);
    await attack(3, 3);
    expect(fresnsCode(await fresnsSend(ANN))).toBe(34103);
  });
});

// Regression: 22 sends from three addresses to new +86 138 numbers (Fresns, no captcha step by
// default) made the anomaly detector block the whole +86138 range for 6 hours, for every user.
describe("the anomaly detector on a prefix with no history", () => {
  it("needs more than a few addresses' sends before it blocks a prefix", async () => {
    t = await createTestServer();
    const send = (national: string, ip: string) =>
      t!.fastify.inject({
        method: "POST",
        url: "/api/v2/common/send-verify-code",
        remoteAddress: ip,
        payload: { type: "sms", useType: 5, templateId: 7, account: national, countryCode: 86 },
      });
    for (let n = 1; n <= 22; n++) {
      expect((await send(attacked(n), `203.0.113.${Math.ceil(n / 10)}`)).json().code).toBe(0);
    }
    t.clock.advanceSeconds(5);
    expect((await send(attacked(23), "203.0.113.3")).json().code).toBe(0);
    await new Promise((resolve) => setTimeout(resolve, 20));
    // a new user of the prefix on another face still gets a code
    const user = await t.fastify.inject({
      method: "POST",
      url: "/auth/v1/verification",
      payload: { phone_number: "+86 13800000009", target: "ANY" },
    });
    expect(user.statusCode, user.body).toBe(200);
    const block = await t.server.backend.counters.peek("default", prefixBlockKey("+86138"), t.clock.nowMs());
    expect(block.count).toBe(0);
  });
});
