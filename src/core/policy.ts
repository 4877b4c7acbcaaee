import type { AbusePolicy, Policy, RateRule } from "./types.js";

/** DESIGN.md "Core rules" defaults; every app may override any of them. */
export const DEFAULT_POLICY: Policy = {
  codeLength: 6,
  codeTtlSeconds: 600,
  maxAttempts: 5,
  tokenTtlSeconds: 600,
  perRecipient: [
    { limit: 1, windowSeconds: 60 },
    { limit: 5, windowSeconds: 600 },
    { limit: 20, windowSeconds: 86_400 },
  ],
  perIp: [{ limit: 10, windowSeconds: 3600 }],
  perApp: [],
  failedChecksPerRecipient: { limit: 20, windowSeconds: 86_400 },
};

export const CODE_LENGTH_MIN = 4;
export const CODE_LENGTH_MAX = 10;

/** Merges an app's overrides onto the defaults; the config schema has already bounded each value. */
export function resolvePolicy(overrides: Partial<Policy> | undefined): Policy {
  const policy = { ...DEFAULT_POLICY, ...overrides };
  return {
    ...policy,
    perRecipient: oneRulePerWindow(policy.perRecipient),
    perIp: oneRulePerWindow(policy.perIp),
    perApp: oneRulePerWindow(policy.perApp),
  };
}

/**
 * A scope's rules share a counter per window (a recipient's, an address's, a country's, a number
 * prefix's), so two rules of one window would be one counter counted twice by one store and once
 * by another: only the stricter is kept, which is what the two together allow.
 */
function oneRulePerWindow(rules: RateRule[]): RateRule[] {
  const byWindow = new Map<number, RateRule>();
  for (const rule of rules) {
    const kept = byWindow.get(rule.windowSeconds);
    if (!kept || rule.limit < kept.limit) byWindow.set(rule.windowSeconds, rule);
  }
  return byWindow.size === rules.length ? rules : [...byWindow.values()];
}

/** Human-readable rule name, used in refusals and the send log ("recipient:1/60s"). */
export function ruleName(scope: string, rule: RateRule): string {
  return `${scope}:${rule.limit}/${rule.windowSeconds}s`;
}

/**
 * Abuse defence defaults: a captcha from the 4th send in 10 minutes per IP (IDaaS always, its API
 * demands one; Fresns never, as its clients have no captcha step, so a captcha decision there is a
 * refusal nobody can get past: everyone behind one address, a carrier's NAT, would be shut out for
 * 10 minutes after three codes), and an SMS guard that allows only a list of large, low-fraud
 * markets; apps widen it.
 */
export const DEFAULT_ABUSE_POLICY: AbusePolicy = {
  captcha: { native: "risk", fresns: "never", cloudbase: "risk", idaas: "always" },
  risk: {
    perIp: { limit: 3, windowSeconds: 600 },
    perSubnet: { limit: 10, windowSeconds: 600 },
    // An IPv6 /48 holds 256 /56s: without it a bot rotating through one site had 256 subnet
    // thresholds (2,560 sends in 10 minutes). A home line or small office never sends 30 codes in
    // 10 minutes; a large office at 9 am may, and is then asked a captcha, not refused. Mobile
    // carriers spread their subscribers' /64s over pools of millions of /48s, a handful per /48.
    perSite: { limit: 30, windowSeconds: 600 },
    perDevice: { limit: 3, windowSeconds: 600 },
  },
  pumping: {
    allowCountries: ["CN", "HK", "MO", "TW", "SG", "JP", "KR", "US", "CA", "GB", "DE", "FR", "AU", "NZ"],
    denyCountries: [],
    // A personal number (UK 070, US 500) follows its owner to any line, and its operator shares
    // what a message to it earns: revenue-share fraud's other favourite after premium rate.
    denyNumberTypes: ["PREMIUM_RATE", "SHARED_COST", "PERSONAL_NUMBER", "PAGER", "UAN", "VOICEMAIL"],
    perCountry: [
      { limit: 1_000, windowSeconds: 3600 },
      { limit: 10_000, windowSeconds: 86_400 },
    ],
    perPrefix: [
      { limit: 50, windowSeconds: 3600 },
      { limit: 300, windowSeconds: 86_400 },
    ],
    prefixDigits: 3,
    dailyBudget: 0,
    safeList: [],
    shadow: false,
    anomaly: {
      enabled: true,
      // A prefix with no history needs real volume before a spike counts: 50 an hour, the
      // prefix's hourly budget (20 let three addresses block a whole operator's range for 6 h).
      minHourlySends: 50,
      spikeFactor: 5,
      maxVerifiedRatio: 0.2,
      blockSeconds: 6 * 3600,
    },
  },
};

/** Merges an app's abuse overrides (one level deep per section) onto the defaults. */
export function resolveAbusePolicy(overrides: DeepPartialAbuse | undefined): AbusePolicy {
  const base = DEFAULT_ABUSE_POLICY;
  const pumping = { ...base.pumping, ...overrides?.pumping };
  return {
    ...(overrides?.external ? { external: overrides.external } : {}),
    captcha: { ...base.captcha, ...overrides?.captcha },
    risk: { ...base.risk, ...overrides?.risk },
    pumping: {
      ...pumping,
      // counted per window, as the send's own rules are (`oneRulePerWindow`)
      perCountry: oneRulePerWindow(pumping.perCountry),
      perPrefix: oneRulePerWindow(pumping.perPrefix),
      anomaly: { ...base.pumping.anomaly, ...overrides?.pumping?.anomaly },
    },
  };
}

export interface DeepPartialAbuse {
  external?: AbusePolicy["external"];
  captcha?: Partial<AbusePolicy["captcha"]>;
  risk?: Partial<AbusePolicy["risk"]>;
  pumping?: Partial<Omit<AbusePolicy["pumping"], "anomaly">> & {
    anomaly?: Partial<AbusePolicy["pumping"]["anomaly"]>;
  };
}

/**
 * The wait the resend rule sets after a send: the shortest per-recipient window (60 s by
 * default; 1 s without one). What a refusal that only a new code can cure (a code worn out by
 * wrong guesses) tells the client to wait; the longer windows hold a new code back only from a
 * recipient sent to many times.
 */
export function resendWaitSeconds(policy: Policy): number {
  const windows = policy.perRecipient.map((rule) => rule.windowSeconds);
  return windows.length === 0 ? 1 : Math.max(1, Math.min(...windows));
}
