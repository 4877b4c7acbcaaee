import ipaddr from "ipaddr.js";
import { OtpError } from "../errors.js";
import { ruleName } from "../policy.js";
import type { CounterCheck, CounterStore } from "../ports.js";
import type { App, PumpingPolicy, RateRule, Recipient } from "../types.js";
import { riskCounterKey } from "../verification/keys.js";

/** Who is asking: the signals every abuse rule may use. */
export interface ClientContext {
  ip?: string | undefined;
  /** device fingerprint header, where a face provides one */
  deviceId?: string | undefined;
}

// The first three octets of a dotted-quad IPv4 address, each 0-255 (what node:net `isIPv4` accepts).
const OCTET = "(?:25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)";
const IPV4_NETWORK_24 = new RegExp(`^(${OCTET}\\.${OCTET}\\.${OCTET})\\.${OCTET}$`);

/**
 * The network a subnet rule counts: an IPv4 /24, or an IPv6 /56. Each holds some 256 of the
 * clients `clientAddressOf` tells apart (IPv4 addresses, IPv6 /64s), and bots rotate within one:
 * an IPv6 home line is delegated a /56 (or a /48), so a /64 subnet would be the client itself.
 */
export function subnetOf(ip: string): string | undefined {
  // One regex for the common case: this runs on every send, and first on a flood's refusals.
  const network = IPV4_NETWORK_24.exec(ip)?.[1];
  if (network !== undefined) return `${network}.0/24`;
  const address = ipv6Of(ip);
  if (typeof address === "string") return subnetOf(address);
  if (address === undefined) return undefined;
  const [a, b, c, d] = address as [number, number, number, number];
  // three groups and the first byte of the fourth
  return `${hex(a)}:${hex(b)}:${hex(c)}:${hex(d & 0xff00)}::/56`;
}

/**
 * The IPv6 /48 a site rule counts: a site's allocation (an office's, or a home line's where the
 * ISP delegates a /48), which holds 256 /56 subnets and 65,536 /64 clients, so a bot rotating
 * through them still counts on one rule. Undefined for an IPv4 client (also one written in IPv6):
 * an IPv4 /16 holds unrelated clients. Costs an IPv4 address one `includes`.
 */
export function siteOf(ip: string): string | undefined {
  if (!ip.includes(":")) return undefined;
  const address = ipv6Of(ip);
  if (typeof address === "string" || address === undefined) return undefined;
  const [a, b, c] = address as [number, number, number];
  return `${hex(a)}:${hex(b)}:${hex(c)}::/48`;
}

/**
 * The one client a per-IP rule counts: an IPv4 address as it is (also when written in IPv6), an
 * IPv6 address by its /64. An IPv6 subscriber is routed a whole /64 and may send from any address
 * in it; an IPv4 /24 holds many unrelated clients, so that grouping is left to the subnet rules.
 */
export function clientAddressOf(ip: string): string {
  // (an IPv4 address, the common case, has no colon: no parsing for it)
  if (!ip.includes(":")) return ip;
  const address = ipv6Of(ip);
  if (typeof address === "string" || address === undefined) return address ?? ip;
  const [a, b, c, d] = address as [number, number, number, number];
  return `${hex(a)}:${hex(b)}:${hex(c)}:${hex(d)}::/64`;
}

/**
 * An IPv6 address's eight groups, or the IPv4 address it carries: IPv4-mapped (`::ffff:a.b.c.d`,
 * however written), translated (`::ffff:0:a.b.c.d`), IPv4-compatible (`::a.b.c.d`) and NAT64's
 * well-known `64:ff9b::/96` addresses are IPv4 clients, each its own, not one /64 they would all
 * share. (NAT64's local-use `64:ff9b:1::/48` may place the IPv4 address elsewhere, as its
 * operator chose: such an address stays an IPv6 one.) Undefined for what is not an IPv6 address.
 */
function ipv6Of(ip: string): number[] | string | undefined {
  // The same address is asked about by each rule set of one request: parsed once.
  if (ip === lastIp) return lastParsed;
  lastIp = ip;
  lastParsed = parseIPv6(ip);
  return lastParsed;
}
let lastIp: string | undefined;
let lastParsed: number[] | string | undefined;

function parseIPv6(ip: string): number[] | string | undefined {
  let parts: number[];
  try {
    // A zone id (`%eth0.100`) names the interface, not the address; ipaddr.js takes fewer of them
    // than node:net does.
    parts = ipaddr.IPv6.parse(ip.split("%", 1)[0] ?? ip).parts;
  } catch {
    return undefined;
  }
  const [a, b, c, d, e, f, high = 0, low = 0] = parts;
  const ipv4 = () => `${high >> 8}.${high & 0xff}.${low >> 8}.${low & 0xff}`;
  if (a === 0 && b === 0 && c === 0 && d === 0) {
    if (e === 0 && f === 0xffff) return ipv4(); // mapped
    if (e === 0xffff && f === 0) return ipv4(); // translated
    if (e === 0 && f === 0 && high !== 0) return ipv4(); // compatible (not :: or ::1)
  }
  if (a === 0x64 && b === 0xff9b && c === 0 && d === 0 && e === 0 && f === 0) return ipv4(); // NAT64
  return parts;
}

function hex(group: number): string {
  return group.toString(16);
}

/** The number prefix the pumping guard budgets: "+" + country code + the first national digits. */
export function numberPrefix(e164: string, countryCallingCodeLength: number, prefixDigits: number): string {
  return e164.slice(0, 1 + countryCallingCodeLength + prefixDigits);
}

/** What a risk rule counts sends of. */
export type RiskScope = "ip" | "subnet" | "site" | "device";

/**
 * Risk rules: sends per IP, subnet, IPv6 site and device in a window. Tripping one asks for a
 * captcha (kind "captcha"); with a solved captcha they are still counted but only as signals
 * (`shadow`).
 */
export function riskCounters(app: App, client: ClientContext, captchaSolved: boolean): CounterCheck[] {
  const { risk } = app.abuse;
  const counters: CounterCheck[] = [];
  if (client.ip) {
    counters.push(riskCounter("ip", clientAddressOf(client.ip), risk.perIp, captchaSolved));
    const subnet = subnetOf(client.ip);
    if (subnet) counters.push(riskCounter("subnet", subnet, risk.perSubnet, captchaSolved));
    const site = siteOf(client.ip);
    if (site) counters.push(riskCounter("site", site, risk.perSite, captchaSolved));
  }
  if (client.deviceId) counters.push(riskCounter("device", client.deviceId, risk.perDevice, captchaSolved));
  return counters;
}

// A function of its own rather than a closure `riskCounters` would make on every send.
function riskCounter(
  scope: RiskScope,
  subject: string,
  rule: RateRule,
  captchaSolved: boolean,
): CounterCheck {
  const counter: CounterCheck = {
    key: riskKey(scope, subject, rule.windowSeconds),
    limit: rule.limit,
    windowSeconds: rule.windowSeconds,
    rule: riskRuleName(scope, rule),
    kind: "captcha",
  };
  if (captchaSolved) counter.shadow = true;
  return counter;
}

/**
 * A risk rule's counter key (the send's and the pre-body check's). A site is a subnet too, and
 * counted as one: its key names its /48, so it never meets a /56's.
 */
export function riskKey(scope: RiskScope, subject: string, windowSeconds: number): string {
  return riskCounterKey(scope === "site" ? "subnet" : scope, subject, windowSeconds);
}

/** The public name of a risk rule, as a refusal reports it (the send's and the pre-body check's). */
export function riskRuleName(scope: RiskScope, rule: RateRule): string {
  return ruleName(`risk_${scope}`, rule);
}

// The keys of the guard's rules that a known-good number's send is let past (see
// `waiveForKnownNumber`): a prefix's block and budgets, a country's budgets.
const PREFIX_BLOCK_KEYS = "pump:block:";
const PREFIX_SENT_KEYS = "pump:pfx:";
const COUNTRY_SENT_KEYS = "pump:cc:";
// The budgets of the same sizes that known-good numbers' sends are held to instead.
const KNOWN_PREFIX_SENT_KEYS = "pump:kpfx:";
const KNOWN_COUNTRY_SENT_KEYS = "pump:kcc:";

/** Key of a prefix's automatic block (set by the anomaly detector, checked on every SMS send). */
export function prefixBlockKey(prefix: string): string {
  return `${PREFIX_BLOCK_KEYS}${prefix}`;
}

/** Key of a prefix's verified (approved) codes in the last hour: the detector's conversion signal. */
export function prefixVerifiedKey(prefix: string): string {
  return `pump:ok:${prefix}:3600`;
}

function prefixSentKey(prefix: string, windowSeconds: number): string {
  return `${PREFIX_SENT_KEYS}${prefix}:${windowSeconds}`;
}

// The anomaly detector compares a prefix's sends in the last hour with its sends in the day.
const DETECTOR_WINDOWS_SECONDS = [3600, 86_400] as const;

export function isSafeListed(policy: PumpingPolicy, e164: string): boolean {
  return policy.safeList.some(
    (entry) => e164 === entry || (entry.length < e164.length && e164.startsWith(entry)),
  );
}

/**
 * libphonenumber's region code for the numbers of no country: the international networks of
 * +800, +808, +870 (Inmarsat), +881 (satellite phones), +882/+883 (international VoIP and
 * mobile carriers), +888 and +979. A valid number without a region is always one of these.
 */
export const NON_GEOGRAPHIC_REGION = "001";

/** The region the guard lists and budgets a number under: its country, or "001". */
function regionOf(recipient: Recipient): string {
  return recipient.country ?? NON_GEOGRAPHIC_REGION;
}

/**
 * The SMS-pumping guard's verdict on a destination: its region, then its kind of number (a
 * premium-rate line pays its owner in an allowed country too); null when allowed. Shadow mode
 * turns a refusal into a note (the caller records it and sends anyway). "*" allows every region
 * with a country, not the non-geographic networks: satellite and international numbers are
 * classic toll-fraud destinations that few apps serve, so they need "001" listed by name.
 */
export function destinationRefusal(policy: PumpingPolicy, recipient: Recipient): string | null {
  const country = regionOf(recipient);
  if (policy.denyCountries.includes(country)) return `country_denied:${country}`;
  const allowed =
    policy.allowCountries.includes(country) ||
    (recipient.country !== undefined && policy.allowCountries.includes("*"));
  if (!allowed) return `country_not_allowed:${country}`;
  const { numberType } = recipient;
  return numberType && policy.denyNumberTypes.includes(numberType)
    ? `number_type_denied:${numberType}`
    : null;
}

/** Budgets per country, per number prefix and per app-day, plus the automatic prefix block. */
export function pumpingCounters(policy: PumpingPolicy, recipient: Recipient, prefix: string): CounterCheck[] {
  const shadow = policy.shadow ? { shadow: true } : {};
  const country = regionOf(recipient);
  const counters: CounterCheck[] = [
    ...budgetCounters(policy.perCountry, COUNTRY_SENT_KEYS, country, "sms_country_", shadow),
    ...budgetCounters(policy.perPrefix, PREFIX_SENT_KEYS, prefix, "sms_prefix_", shadow),
    // A check-only flag: refuses while the detector's block stands, counts nothing.
    {
      key: prefixBlockKey(prefix),
      limit: 0,
      windowSeconds: 1,
      increment: 0,
      rule: `sms_prefix_blocked:${prefix}`,
      kind: "deny",
      ...shadow,
    },
  ];
  // The detector needs the prefix's hourly and daily sends even when no budget has that window:
  // those are counted without ever refusing (a shadow counter no send can reach).
  if (policy.anomaly.enabled) {
    for (const windowSeconds of DETECTOR_WINDOWS_SECONDS) {
      if (policy.perPrefix.some((rule) => rule.windowSeconds === windowSeconds)) continue;
      counters.push({
        key: prefixSentKey(prefix, windowSeconds),
        limit: Number.MAX_SAFE_INTEGER,
        windowSeconds,
        rule: `sms_prefix_sends:${prefix}:${windowSeconds}s`,
        kind: "deny",
        shadow: true,
      });
    }
  }
  if (policy.dailyBudget > 0) {
    const rule = { limit: policy.dailyBudget, windowSeconds: 86_400 };
    counters.push({
      key: "pump:all:86400",
      ...rule,
      rule: ruleName("sms_daily_budget", rule),
      kind: "deny",
      ...shadow,
    });
  }
  return counters;
}

// A number whose code was approved stays known-good for at least this long (and at most twice
// as long). Counter windows start at their first hit and are never extended, so approvals are
// counted per fixed period of this length, each period's counter living into the next period's
// end, and a send asks this period's and the last one's: an approval just before a period ends is
// still found a whole period later.
const KNOWN_NUMBER_PERIOD_SECONDS = 30 * 86_400;

function knownNumberKey(e164: string, period: number): string {
  return `pump:known:${e164}:${period}`;
}

function knownNumberPeriod(nowMs: number): number {
  return Math.floor(nowMs / (KNOWN_NUMBER_PERIOD_SECONDS * 1000));
}

/**
 * Marks an SMS number known-good for the app: its owner read a code sent to it and had it
 * approved, which a pumped number's owner does not. Called once per approved SMS code.
 */
export async function noteKnownNumber(
  counters: CounterStore,
  appId: string,
  e164: string,
  nowMs: number,
): Promise<void> {
  const key = knownNumberKey(e164, knownNumberPeriod(nowMs));
  await counters.hit(appId, key, 2 * KNOWN_NUMBER_PERIOD_SECONDS, nowMs);
}

/** Whether the number had an SMS code approved in this period or the last (`noteKnownNumber`). */
export async function isKnownNumber(
  counters: CounterStore,
  appId: string,
  e164: string,
  nowMs: number,
): Promise<boolean> {
  const period = knownNumberPeriod(nowMs);
  const [current, previous] = await Promise.all([
    counters.peek(appId, knownNumberKey(e164, period), nowMs),
    counters.peek(appId, knownNumberKey(e164, period - 1), nowMs),
  ]);
  return current.count > 0 || previous.count > 0;
}

/** The send log's note on a send let past the guard's prefix or country rules as a known number. */
export const KNOWN_NUMBER_NOTE = "known_number";

/**
 * Whether the guard rule that refused a send (`rule`, one of `counters`) is one a known-good
 * number is let past: a prefix's automatic block or budget, or a country's budget. Those are
 * shared by every user of a prefix or country, so a few attackers' sends to new numbers could
 * otherwise shut everyone out. Not the app's daily budget (its operator's hard spending cap).
 */
export function waivableForKnownNumber(counters: readonly CounterCheck[], rule: string): boolean {
  const refusing = counters.find((counter) => counter.rule === rule);
  return refusing !== undefined && refusing.kind === "deny" && isWaivableKey(refusing.key);
}

/**
 * For a known-good number's send: the guard's shared prefix and country rules among `counters`
 * count without refusing (`shadow`, in place), and the send is held to budgets of the same sizes
 * kept for known numbers alone. The shared ones are what an attacker's sends to new numbers use
 * up; the known numbers' own bound what one who can read the codes sent to numbers of their own
 * (and so make them known) can pump through them.
 */
export function waiveForKnownNumber(
  counters: CounterCheck[],
  policy: PumpingPolicy,
  recipient: Recipient,
  prefix: string,
): void {
  for (let i = 0; i < counters.length; i++) {
    const counter = counters[i] as CounterCheck;
    if (counter.kind === "deny" && !counter.shadow && isWaivableKey(counter.key)) {
      counters[i] = { ...counter, shadow: true };
    }
  }
  const shadow = policy.shadow ? { shadow: true } : {};
  const country = regionOf(recipient);
  counters.push(
    ...budgetCounters(policy.perCountry, KNOWN_COUNTRY_SENT_KEYS, country, "sms_known_country_", shadow),
    ...budgetCounters(policy.perPrefix, KNOWN_PREFIX_SENT_KEYS, prefix, "sms_known_prefix_", shadow),
  );
}

/** A budget's deny counters: one a rule, keyed `<keys><subject>:<window>`, named `<name><subject>:…`. */
function budgetCounters(
  rules: readonly RateRule[],
  keys: string,
  subject: string,
  name: string,
  shadow: { shadow?: boolean },
): CounterCheck[] {
  return rules.map((rule) => ({
    key: `${keys}${subject}:${rule.windowSeconds}`,
    ...rule,
    rule: ruleName(`${name}${subject}`, rule),
    kind: "deny" as const,
    ...shadow,
  }));
}

function isWaivableKey(key: string): boolean {
  return (
    key.startsWith(PREFIX_BLOCK_KEYS) || key.startsWith(PREFIX_SENT_KEYS) || key.startsWith(COUNTRY_SENT_KEYS)
  );
}

/**
 * Blocks a prefix whose sends jump far above its usual rate while few of them get verified: the
 * signature of SMS pumping (the numbers' owners profit from the SMS, nobody reads the code).
 * Runs off the request path. Returns true when it set a block.
 */
export async function detectPumpingAnomaly(
  counters: CounterStore,
  app: App,
  prefix: string,
  nowMs: number,
): Promise<boolean> {
  const { anomaly } = app.abuse.pumping;
  if (!anomaly.enabled) return false;
  const [lastHour, lastDay, verified] = await Promise.all([
    counters.peek(app.id, prefixSentKey(prefix, 3600), nowMs),
    counters.peek(app.id, prefixSentKey(prefix, 86_400), nowMs),
    counters.peek(app.id, prefixVerifiedKey(prefix), nowMs),
  ]);
  // A prefix with little history has a usual rate of 1 an hour, so any busy hour is a spike:
  // `minHourlySends` (50 by default, the prefix's hourly budget) is the volume it must reach
  // first. (A floor under the usual rate of minHourlySends / spikeFactor would be the same rule.)
  if (lastHour.count < anomaly.minHourlySends) return false;
  // The usual hourly rate: the day's sends outside this hour, spread over the other 23 hours.
  const usualHourly = Math.max(1, (lastDay.count - lastHour.count) / 23);
  const spiking = lastHour.count > anomaly.spikeFactor * usualHourly;
  const verifiedRatio = verified.count / lastHour.count;
  if (!spiking || verifiedRatio >= anomaly.maxVerifiedRatio) return false;
  await counters.hit(app.id, prefixBlockKey(prefix), anomaly.blockSeconds, nowMs);
  return true;
}

/**
 * The denial a shadow-less guard answers with. A refusal by the lists says which country or kind
 * of number, so a developer whose first SMS to a market outside the default list is refused
 * knows what to widen; a budget's or a block's says no more than the code's message.
 */
export function pumpingDenied(reason: string): OtpError {
  const [kind, value] = reason.split(":");
  const message =
    kind === "country_not_allowed" || kind === "country_denied"
      ? value === NON_GEOGRAPHIC_REGION
        ? `SMS to a non-geographic number (region ${value}: satellite, international networks) is not allowed`
        : `SMS to this country (${value}) is not allowed`
      : kind === "number_type_denied"
        ? `SMS to this kind of number (${value}) is not allowed`
        : undefined;
  return new OtpError("PUMPING_DENIED", { details: { rule: reason }, ...(message ? { message } : {}) });
}
