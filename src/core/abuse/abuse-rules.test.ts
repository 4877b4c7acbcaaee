import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { FixedClock } from "../../../test/fakes/fixed-clock.js";
import { createSqliteBackend, type SqliteBackend } from "../../storage/sqlite/index.js";
import { newApp } from "../apps/apps.js";
import { DEFAULT_ABUSE_POLICY, resolveAbusePolicy } from "../policy.js";
import type { CounterCheck } from "../ports.js";
import { parseRecipient } from "../recipients.js";
import type { AbusePolicy, App, PumpingPolicy, Recipient } from "../types.js";
import {
  clientAddressOf,
  destinationRefusal,
  detectPumpingAnomaly,
  isSafeListed,
  numberPrefix,
  prefixBlockKey,
  prefixVerifiedKey,
  pumpingCounters,
  pumpingDenied,
  riskCounters,
  siteOf,
  subnetOf,
  waivableForKnownNumber,
  waiveForKnownNumber,
} from "./abuse-rules.js";

const pumping = (overrides: Partial<PumpingPolicy> = {}): PumpingPolicy => ({
  ...DEFAULT_ABUSE_POLICY.pumping,
  ...overrides,
});

const sms = (address: string): Recipient => parseRecipient("sms", address, { defaultCountry: "CN" });

describe("subnetOf", () => {
  it.each([
    ["203.0.113.7", "203.0.113.0/24"],
    ["203.0.113.255", "203.0.113.0/24"],
    ["::ffff:203.0.113.7", "203.0.113.0/24"],
    ["::FFFF:10.1.2.3", "10.1.2.0/24"],
    // an IPv6 /56: the fourth group's low byte is the line's own /64s
    ["2001:db8:1:2::a", "2001:db8:1:0::/56"],
    ["2001:db8:1:2ff::a", "2001:db8:1:200::/56"],
    ["2001:db8:1:ab12::a", "2001:db8:1:ab00::/56"],
    ["2001:0DB8:0001:0002:ffff:0:0:b", "2001:db8:1:0::/56"],
    ["2001:db8::1", "2001:db8:0:0::/56"],
    ["::1", "0:0:0:0::/56"],
    ["fe80::1:2:3:4", "fe80:0:0:0::/56"],
    ["fe80::1%eth0", "fe80:0:0:0::/56"],
    // an IPv4 address however IPv6 carries it is in its IPv4 /24
    ["64:ff9b::198.51.100.8", "198.51.100.0/24"],
    ["::ffff:c633:640b", "198.51.100.0/24"],
    ["0:0:0:0:0:ffff:c633:640b", "198.51.100.0/24"],
    ["::ffff:0:198.51.100.8", "198.51.100.0/24"],
    // a dotted tail is two groups
    ["1:2::4:5:6:1.2.3.4", "1:2:0:0::/56"],
    // zone ids node:net takes (a VLAN, a docker bridge) name the interface, not the address
    ["fe80::1%eth0.100", "fe80:0:0:0::/56"],
    ["fe80::1%br-1a2b", "fe80:0:0:0::/56"],
  ])("%s is in %s", (ip, subnet) => {
    expect(subnetOf(ip)).toBe(subnet);
  });

  it.each([
    "",
    "not an ip",
    "300.1.1.1",
    "1.2.3",
    "01.2.3.4",
    "1.2.3.256",
    "::ffff:1.2.3.999",
    "2001:db8::g",
  ])("has no subnet for %j", (ip) => {
    expect(subnetOf(ip)).toBeUndefined();
  });
});

describe("clientAddressOf", () => {
  it.each([
    ["203.0.113.7", "203.0.113.7"],
    ["::ffff:203.0.113.7", "203.0.113.7"],
    ["::FFFF:10.1.2.3", "10.1.2.3"],
    ["2001:db8:1:2::a", "2001:db8:1:2::/64"],
    ["2001:0DB8:0001:0002:ffff:0:0:b", "2001:db8:1:2::/64"],
    ["2001:db8::1", "2001:db8:0:0::/64"],
    ["2001:DB8:0:0:1::2", "2001:db8:0:0::/64"],
    // each IPv4 client IPv6 carries is its own, not one /64 they would all share
    ["64:ff9b::198.51.100.8", "198.51.100.8"],
    ["64:ff9b::203.0.113.10", "203.0.113.10"],
    ["::ffff:c633:640b", "198.51.100.11"],
    ["0:0:0:0:0:ffff:c633:640b", "198.51.100.11"],
    ["::ffff:0:198.51.100.8", "198.51.100.8"],
    ["::198.51.100.8", "198.51.100.8"],
    // NAT64's local-use /48 places the IPv4 address where its operator chose: read as IPv6
    ["64:ff9b:1:c633:64:800::", "64:ff9b:1:c633::/64"],
    ["64:ff9b:1:cb00:71:a00::", "64:ff9b:1:cb00::/64"],
    ["::", "0:0:0:0::/64"],
    ["::1", "0:0:0:0::/64"],
    ["not an ip", "not an ip"],
  ])("counts %s as %s", (ip, client) => {
    expect(clientAddressOf(ip)).toBe(client);
  });

  it("counts a /64 as one client, within a /56 subnet of many", () => {
    const clients = ["2001:db8:1:2::a", "2001:db8:1:2:ffff::1", "2001:db8:1:2:1:2:3:4"].map(clientAddressOf);
    expect(new Set(clients).size).toBe(1);
    expect(subnetOf("2001:db8:1:3::a")).toBe(subnetOf("2001:db8:1:2::a"));
    expect(clientAddressOf("2001:db8:1:3::a")).not.toBe(clientAddressOf("2001:db8:1:2::a"));
  });
});

describe("siteOf", () => {
  it.each([
    ["2001:db8:1:2::a", "2001:db8:1::/48"],
    ["2001:db8:1:ff00::a", "2001:db8:1::/48"],
    ["2001:0DB8:00ab:ffff:1:2:3:4", "2001:db8:ab::/48"],
    ["2001:db8::1", "2001:db8:0::/48"],
    ["fe80::1%eth0", "fe80:0:0::/48"],
  ])("%s is in the site %s", (ip, site) => {
    expect(siteOf(ip)).toBe(site);
  });

  it("holds every /56 and /64 of one /48, and no other", () => {
    const clients = ["2001:db8:1:0::1", "2001:db8:1:100::1", "2001:db8:1:fe03::1", "2001:db8:1:ffff:1::"];
    expect(new Set(clients.map(siteOf))).toEqual(new Set(["2001:db8:1::/48"]));
    expect(new Set(clients.map(subnetOf)).size).toBe(4);
    expect(siteOf("2001:db8:2::1")).not.toBe(siteOf("2001:db8:1::1"));
  });

  it.each([
    "203.0.113.7",
    "::ffff:203.0.113.7",
    "64:ff9b::198.51.100.8",
    "::ffff:0:198.51.100.8",
    "",
    "not an ip",
    "2001:db8::g",
  ])("has no site for %j (an IPv4 client, or no address)", (ip) => {
    expect(siteOf(ip)).toBeUndefined();
  });
});

describe("riskCounters", () => {
  const app = newApp({ id: "shop" });

  it("counts the IP, its subnet and the device, each asking for a captcha", () => {
    expect(riskCounters(app, { ip: "203.0.113.7", deviceId: "d-1" }, false)).toEqual([
      {
        key: "ip:203.0.113.7:risk:600",
        limit: 3,
        windowSeconds: 600,
        rule: "risk_ip:3/600s",
        kind: "captcha",
      },
      {
        key: "subnet:203.0.113.0/24:risk:600",
        limit: 10,
        windowSeconds: 600,
        rule: "risk_subnet:10/600s",
        kind: "captcha",
      },
      {
        key: "device:d-1:risk:600",
        limit: 3,
        windowSeconds: 600,
        rule: "risk_device:3/600s",
        kind: "captcha",
      },
    ]);
  });

  it("counts an IPv6 client's /64, its /56 and its /48 site", () => {
    expect(riskCounters(app, { ip: "2001:db8:1:2::a" }, false)).toEqual([
      {
        key: "ip:2001:db8:1:2::/64:risk:600",
        limit: 3,
        windowSeconds: 600,
        rule: "risk_ip:3/600s",
        kind: "captcha",
      },
      {
        key: "subnet:2001:db8:1:0::/56:risk:600",
        limit: 10,
        windowSeconds: 600,
        rule: "risk_subnet:10/600s",
        kind: "captcha",
      },
      {
        key: "subnet:2001:db8:1::/48:risk:600",
        limit: 30,
        windowSeconds: 600,
        rule: "risk_site:30/600s",
        kind: "captcha",
      },
    ]);
  });

  it("keeps counting with a solved captcha, but only as signals (shadow)", () => {
    const counters = riskCounters(app, { ip: "2001:db8::1", deviceId: "d-1" }, true);
    expect(counters).toHaveLength(4);
    expect(counters.every((counter) => counter.shadow === true && counter.kind === "captcha")).toBe(true);
  });

  it("has nothing to count without an IP or device, and no subnet for a malformed IP", () => {
    expect(riskCounters(app, {}, false)).toEqual([]);
    expect(riskCounters(app, { ip: "unknown" }, false).map((counter) => counter.key)).toEqual([
      "ip:unknown:risk:600",
    ]);
  });

  it("uses the app's configured rules", () => {
    const custom = newApp({
      id: "shop",
      abuse: resolveAbusePolicy({ risk: { perIp: { limit: 5, windowSeconds: 60 } } }),
    });
    expect(riskCounters(custom, { ip: "203.0.113.7" }, false)[0]).toMatchObject({
      key: "ip:203.0.113.7:risk:60",
      limit: 5,
      rule: "risk_ip:5/60s",
    });
    const site = newApp({
      id: "shop",
      abuse: resolveAbusePolicy({ risk: { perSite: { limit: 100, windowSeconds: 3600 } } }),
    });
    expect(riskCounters(site, { ip: "2001:db8:1:2::a" }, false)[2]).toMatchObject({
      key: "subnet:2001:db8:1::/48:risk:3600",
      limit: 100,
      rule: "risk_site:100/3600s",
    });
  });
});

describe("numberPrefix, isSafeListed", () => {
  it("takes the country code and the first national digits", () => {
    expect(numberPrefix("+447400123456", 2, 3)).toBe("+44740");
    expect(numberPrefix("+8613800138000", 2, 3)).toBe("+86138");
    expect(numberPrefix("+12015550123", 1, 0)).toBe("+1");
  });

  it("matches exact numbers and +prefixes, nothing else", () => {
    const policy = pumping({ safeList: ["+447400", "+8613800138000"] });
    expect(isSafeListed(policy, "+447400123456")).toBe(true);
    expect(isSafeListed(policy, "+8613800138000")).toBe(true);
    expect(isSafeListed(policy, "+8613800138001")).toBe(false);
    expect(isSafeListed(policy, "+447800123456")).toBe(false);
    // an entry longer than the number is no prefix of it
    expect(isSafeListed(pumping({ safeList: ["+86138001380001"] }), "+8613800138000")).toBe(false);
    expect(isSafeListed(pumping(), "+447400123456")).toBe(false);
  });
});

describe("destinationRefusal", () => {
  it("allows the default markets and refuses the rest", () => {
    expect(destinationRefusal(pumping(), sms("+8613800138000"))).toBeNull();
    expect(destinationRefusal(pumping(), sms("+447400123456"))).toBeNull();
    expect(destinationRefusal(pumping(), sms("+2348031234567"))).toBe("country_not_allowed:NG");
    expect(destinationRefusal(pumping(), sms("+447911123456"))).toBe("country_not_allowed:GG");
  });

  it("lets the deny list win over a wildcard allow list", () => {
    const policy = pumping({ allowCountries: ["*"], denyCountries: ["NG"] });
    expect(destinationRefusal(policy, sms("+2348031234567"))).toBe("country_denied:NG");
    expect(destinationRefusal(policy, sms("+37061234567"))).toBeNull();
    expect(destinationRefusal(pumping({ denyCountries: ["CN"] }), sms("+8613800138000"))).toBe(
      "country_denied:CN",
    );
  });

  // Satellite (+881), Inmarsat (+870) and international VoIP or mobile networks (+882, +883):
  // numbers of no country, the classic toll-fraud destinations.
  const NON_GEOGRAPHIC = ["+881612345678", "+870773111632", "+883510012345"];

  it.each(NON_GEOGRAPHIC)("lists %s, a number of no country, under libphonenumber's region 001", (number) => {
    const recipient = sms(number);
    expect(recipient.country).toBeUndefined();
    expect(destinationRefusal(pumping(), recipient)).toBe("country_not_allowed:001");
  });

  it('leaves the non-geographic numbers out of "*": they are allowed only by "001"', () => {
    for (const number of NON_GEOGRAPHIC) {
      expect(destinationRefusal(pumping({ allowCountries: ["*"] }), sms(number))).toBe(
        "country_not_allowed:001",
      );
      expect(destinationRefusal(pumping({ allowCountries: ["*", "001"] }), sms(number))).toBeNull();
      expect(destinationRefusal(pumping({ allowCountries: ["001"] }), sms(number))).toBeNull();
      expect(
        destinationRefusal(pumping({ allowCountries: ["*", "001"], denyCountries: ["001"] }), sms(number)),
      ).toBe("country_denied:001");
    }
    // every region with a country is still in "*"
    expect(destinationRefusal(pumping({ allowCountries: ["*"] }), sms("+37061234567"))).toBeNull();
    expect(destinationRefusal(pumping({ allowCountries: ["001"] }), sms("+37061234567"))).toBe(
      "country_not_allowed:LT",
    );
  });

  it.each([
    ["+19005550123", "PREMIUM_RATE"],
    ["+449098790123", "PREMIUM_RATE"],
    ["+448712345678", "PREMIUM_RATE"],
    ["+33899123456", "PREMIUM_RATE"],
    ["+33810123456", "SHARED_COST"],
    ["+447640123456", "PAGER"],
    ["+445512345678", "UAN"],
    ["+33806123456", "UAN"],
    // personal numbers (UK 070, US 500): revenue-shared like premium rate
    ["+447012345678", "PERSONAL_NUMBER"],
    ["+15002345678", "PERSONAL_NUMBER"],
  ])("refuses %s, a %s number in an allowed market, by default", (number, type) => {
    expect(sms(number).numberType).toBe(type);
    expect(destinationRefusal(pumping(), sms(number))).toBe(`number_type_denied:${type}`);
  });

  it("refuses a voicemail number by default", () => {
    const swissVoicemail = sms("+41860123456789");
    expect(swissVoicemail.numberType).toBe("VOICEMAIL");
    expect(destinationRefusal(pumping({ allowCountries: ["CH"] }), swissVoicemail)).toBe(
      "number_type_denied:VOICEMAIL",
    );
  });

  it.each([
    ["+33123456789", "FIXED_LINE"],
    ["+448001234567", "TOLL_FREE"],
    ["+18005550123", "TOLL_FREE"],
    ["+33912345678", "VOIP"],
    ["+12025550123", "FIXED_LINE_OR_MOBILE"],
    ["+8613800138000", "MOBILE"],
  ])("allows %s, a %s number, by default", (number, type) => {
    const recipient = sms(number);
    expect(recipient.numberType).toBe(type);
    expect(destinationRefusal(pumping(), recipient)).toBeNull();
  });

  it("allows a number whose kind is unknown", () => {
    const { numberType: _unknown, ...untyped } = sms("+19005550123");
    expect(destinationRefusal(pumping(), untyped)).toBeNull();
  });

  it("refuses the kinds an app lists instead of the default ones", () => {
    const widened = pumping({ denyNumberTypes: ["PREMIUM_RATE", "VOIP", "TOLL_FREE"] });
    expect(destinationRefusal(widened, sms("+33912345678"))).toBe("number_type_denied:VOIP");
    expect(destinationRefusal(widened, sms("+18005550123"))).toBe("number_type_denied:TOLL_FREE");
    expect(destinationRefusal(widened, sms("+33810123456"))).toBeNull();
    expect(destinationRefusal(pumping({ denyNumberTypes: [] }), sms("+19005550123"))).toBeNull();
  });

  it("answers the region first", () => {
    expect(destinationRefusal(pumping({ denyCountries: ["US"] }), sms("+19005550123"))).toBe(
      "country_denied:US",
    );
  });
});

describe("pumpingCounters", () => {
  const uk = sms("+447400123456");

  it("budgets the country and the prefix, and checks the prefix's block without counting it", () => {
    const counters = pumpingCounters(pumping(), uk, "+44740");
    expect(counters).toEqual<CounterCheck[]>([
      {
        key: "pump:cc:GB:3600",
        limit: 1000,
        windowSeconds: 3600,
        rule: "sms_country_GB:1000/3600s",
        kind: "deny",
      },
      {
        key: "pump:cc:GB:86400",
        limit: 10_000,
        windowSeconds: 86_400,
        rule: "sms_country_GB:10000/86400s",
        kind: "deny",
      },
      {
        key: "pump:pfx:+44740:3600",
        limit: 50,
        windowSeconds: 3600,
        rule: "sms_prefix_+44740:50/3600s",
        kind: "deny",
      },
      {
        key: "pump:pfx:+44740:86400",
        limit: 300,
        windowSeconds: 86_400,
        rule: "sms_prefix_+44740:300/86400s",
        kind: "deny",
      },
      {
        key: prefixBlockKey("+44740"),
        limit: 0,
        windowSeconds: 1,
        increment: 0,
        rule: "sms_prefix_blocked:+44740",
        kind: "deny",
      },
    ]);
  });

  it("adds the global daily budget when one is set", () => {
    const counters = pumpingCounters(pumping({ dailyBudget: 500 }), uk, "+44740");
    expect(counters.at(-1)).toEqual({
      key: "pump:all:86400",
      limit: 500,
      windowSeconds: 86_400,
      rule: "sms_daily_budget:500/86400s",
      kind: "deny",
    });
  });

  it("marks every counter shadow in shadow mode", () => {
    const counters = pumpingCounters(pumping({ shadow: true, dailyBudget: 1 }), uk, "+44740");
    expect(counters.length).toBeGreaterThan(0);
    expect(counters.every((counter) => counter.shadow === true)).toBe(true);
  });

  it("counts the detector's hourly and daily sends when no budget has those windows, never refusing", () => {
    const counters = pumpingCounters(
      pumping({ perPrefix: [{ limit: 5, windowSeconds: 3600 }] }),
      uk,
      "+44740",
    );
    const prefixCounters = counters.filter((counter) => counter.key.startsWith("pump:pfx:"));
    expect(prefixCounters).toEqual([
      {
        key: "pump:pfx:+44740:3600",
        limit: 5,
        windowSeconds: 3600,
        rule: "sms_prefix_+44740:5/3600s",
        kind: "deny",
      },
      {
        key: "pump:pfx:+44740:86400",
        limit: Number.MAX_SAFE_INTEGER,
        windowSeconds: 86_400,
        rule: "sms_prefix_sends:+44740:86400s",
        kind: "deny",
        shadow: true,
      },
    ]);
    const off = pumping({
      perPrefix: [],
      anomaly: { ...DEFAULT_ABUSE_POLICY.pumping.anomaly, enabled: false },
    });
    expect(pumpingCounters(off, uk, "+44740").some((counter) => counter.key.startsWith("pump:pfx:"))).toBe(
      false,
    );
  });

  it("budgets a region-less number under region 001", () => {
    const [first] = pumpingCounters(pumping(), sms("+881612345678"), "+881612");
    expect(first?.key).toBe("pump:cc:001:3600");
    expect(first?.rule).toBe("sms_country_001:1000/3600s");
  });

  it("names the rule a denial carries", () => {
    const error = pumpingDenied("country_denied:NG");
    expect(error.code).toBe("PUMPING_DENIED");
    expect(error.details.rule).toBe("country_denied:NG");
    expect(error.message).toBe("SMS to this country (NG) is not allowed");
    const nonGeographic = pumpingDenied("country_not_allowed:001");
    expect(nonGeographic.details.rule).toBe("country_not_allowed:001");
    expect(nonGeographic.message).toBe(
      "SMS to a non-geographic number (region 001: satellite, international networks) is not allowed",
    );
  });
});

describe("waivableForKnownNumber, waiveForKnownNumber", () => {
  const uk = sms("+447400123456");
  const counters = () => [
    { key: "r:sms:+447400123456:60", limit: 1, windowSeconds: 60, rule: "recipient:1/60s" },
    ...pumpingCounters(pumping({ dailyBudget: 100 }), uk, "+44740"),
  ];

  it("lets a known number past a prefix's block and budgets and a country's budgets only", () => {
    const all = counters();
    const waivable = all.filter((counter) => waivableForKnownNumber(all, counter.rule)).map((c) => c.rule);
    expect(waivable).toEqual([
      "sms_country_GB:1000/3600s",
      "sms_country_GB:10000/86400s",
      "sms_prefix_+44740:50/3600s",
      "sms_prefix_+44740:300/86400s",
      "sms_prefix_blocked:+44740",
    ]);
    expect(waivableForKnownNumber(all, "sms_daily_budget:100/86400s")).toBe(false);
    expect(waivableForKnownNumber(all, "recipient:1/60s")).toBe(false);
    expect(waivableForKnownNumber(all, "no such rule")).toBe(false);
  });

  it("makes those rules count without refusing, in place, leaves the others, and adds the known numbers' own", () => {
    const all = counters();
    const before = all.map((counter) => ({ ...counter }));
    waiveForKnownNumber(all, pumping({ dailyBudget: 100 }), uk, "+44740");
    expect(all.slice(0, before.length).map((counter) => counter.key)).toEqual(
      before.map((counter) => counter.key),
    );
    expect(all.slice(before.length).map((counter) => [counter.key, counter.limit, counter.kind])).toEqual([
      ["pump:kcc:GB:3600", 1_000, "deny"],
      ["pump:kcc:GB:86400", 10_000, "deny"],
      ["pump:kpfx:+44740:3600", 50, "deny"],
      ["pump:kpfx:+44740:86400", 300, "deny"],
    ]);
    expect(all.filter((counter) => counter.shadow).map((counter) => counter.rule)).toEqual([
      "sms_country_GB:1000/3600s",
      "sms_country_GB:10000/86400s",
      "sms_prefix_+44740:50/3600s",
      "sms_prefix_+44740:300/86400s",
      "sms_prefix_blocked:+44740",
    ]);
    expect(all.find((counter) => counter.rule === "sms_daily_budget:100/86400s")?.shadow).toBeUndefined();
    expect(all[0]).toEqual(before[0]);
  });
});

describe("detectPumpingAnomaly", () => {
  const PREFIX = "+44740";
  const HOUR = 3600;
  let backend: SqliteBackend;
  let clock: FixedClock;
  beforeEach(() => {
    backend = createSqliteBackend({ path: ":memory:" });
    clock = new FixedClock();
  });
  afterEach(() => backend.close());

  function appWith(
    overrides: Partial<PumpingPolicy> = {},
    anomaly: Partial<PumpingPolicy["anomaly"]> = {},
  ): App {
    const abuse: AbusePolicy = {
      ...DEFAULT_ABUSE_POLICY,
      pumping: pumping({ ...overrides, anomaly: { ...DEFAULT_ABUSE_POLICY.pumping.anomaly, ...anomaly } }),
    };
    return newApp({ id: "shop", abuse });
  }

  /** `n` SMS to the prefix now, counted the way the send's prefix counters count them. */
  async function sent(app: App, n: number): Promise<void> {
    const counters = pumpingCounters(app.abuse.pumping, sms("+447400123456"), PREFIX).filter(
      (counter) => counter.key.startsWith("pump:pfx:") && counter.increment !== 0,
    );
    for (let i = 0; i < n; i++) {
      for (const counter of counters) {
        await backend.counters.hit(app.id, counter.key, counter.windowSeconds, clock.nowMs());
      }
    }
  }

  async function verified(app: App, n: number): Promise<void> {
    for (let i = 0; i < n; i++)
      await backend.counters.hit(app.id, prefixVerifiedKey(PREFIX), HOUR, clock.nowMs());
  }

  async function blockState(app: App) {
    return backend.counters.peek(app.id, prefixBlockKey(PREFIX), clock.nowMs());
  }

  it("blocks a cold prefix that suddenly gets many unverified SMS, for blockSeconds", async () => {
    const app = appWith();
    await sent(app, 50);
    expect(await detectPumpingAnomaly(backend.counters, app, PREFIX, clock.nowMs())).toBe(true);
    expect(await blockState(app)).toEqual({ count: 1, resetAtMs: clock.nowMs() + 6 * HOUR * 1000 });
    // the block flag refuses every further send to the prefix (limit 0, never counted)
    const flag = pumpingCounters(app.abuse.pumping, sms("+447400123456"), PREFIX).find(
      (counter) => counter.key === prefixBlockKey(PREFIX),
    );
    expect(flag).toMatchObject({ limit: 0, increment: 0, kind: "deny" });
  });

  it("leaves a prefix alone below minHourlySends", async () => {
    const app = appWith();
    await sent(app, 49);
    expect(await detectPumpingAnomaly(backend.counters, app, PREFIX, clock.nowMs())).toBe(false);
    expect((await blockState(app)).count).toBe(0);
  });

  // Regression: 21 unverified sends in an hour, from three addresses, blocked a prefix with no
  // history (+86138, a whole operator's range) for 6 hours for every user of the app.
  it("needs a prefix's whole hourly budget (50) before a cold prefix's hour is a spike", async () => {
    const app = appWith();
    expect(DEFAULT_ABUSE_POLICY.pumping.anomaly.minHourlySends).toBe(50);
    await sent(app, 21);
    expect(await detectPumpingAnomaly(backend.counters, app, PREFIX, clock.nowMs())).toBe(false);
    await sent(app, 28);
    expect(await detectPumpingAnomaly(backend.counters, app, PREFIX, clock.nowMs())).toBe(false);
    await sent(app, 1);
    expect(await detectPumpingAnomaly(backend.counters, app, PREFIX, clock.nowMs())).toBe(true);
  });

  it("leaves a spiking prefix alone while its codes get verified", async () => {
    const app = appWith();
    await sent(app, 50);
    await verified(app, 10); // 20 % is the limit: not below it
    expect(await detectPumpingAnomaly(backend.counters, app, PREFIX, clock.nowMs())).toBe(false);
    await sent(app, 1); // 10 of 51 is below 20 %
    expect(await detectPumpingAnomaly(backend.counters, app, PREFIX, clock.nowMs())).toBe(true);
  });

  it("measures the spike against the prefix's usual hourly rate", async () => {
    const app = appWith();
    await sent(app, 230); // the day's first hours: about 10 an hour over 23 hours
    clock.advanceSeconds(20 * HOUR);
    await sent(app, 50); // this hour: 50, not more than 5 x 10
    expect(await detectPumpingAnomaly(backend.counters, app, PREFIX, clock.nowMs())).toBe(false);
    await sent(app, 1); // 51 > 5 x 230/23
    expect(await detectPumpingAnomaly(backend.counters, app, PREFIX, clock.nowMs())).toBe(true);
  });

  it("honours the configured thresholds", async () => {
    const app = appWith({}, { minHourlySends: 5, spikeFactor: 2, maxVerifiedRatio: 0.5, blockSeconds: 60 });
    await sent(app, 5);
    await verified(app, 2);
    expect(await detectPumpingAnomaly(backend.counters, app, PREFIX, clock.nowMs())).toBe(true);
    expect((await blockState(app)).resetAtMs).toBe(clock.nowMs() + 60_000);
  });

  it("does nothing when switched off", async () => {
    const app = appWith({}, { enabled: false });
    await sent(app, 100);
    expect(await detectPumpingAnomaly(backend.counters, app, PREFIX, clock.nowMs())).toBe(false);
    expect((await blockState(app)).count).toBe(0);
  });

  it("keeps one app's prefixes apart from another's", async () => {
    const app = appWith();
    await sent(app, 60);
    const quiet = { ...app, id: "quiet" };
    expect(await detectPumpingAnomaly(backend.counters, quiet, PREFIX, clock.nowMs())).toBe(false);
  });

  it.each([
    ["by the hour only", [{ limit: 1000, windowSeconds: 3600 }]],
    ["by the day only", [{ limit: 1000, windowSeconds: 86_400 }]],
    ["not at all", []],
  ])("still watches a prefix when the app budgets prefixes %s (@see issue 3)", async (_name, perPrefix) => {
    const app = appWith({ perPrefix });
    await sent(app, 50);
    expect(await detectPumpingAnomaly(backend.counters, app, PREFIX, clock.nowMs())).toBe(true);
  });
});
