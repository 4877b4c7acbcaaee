import type { Policy, RateRule } from "./types.js";

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
  return { ...DEFAULT_POLICY, ...overrides };
}

/** Human-readable rule name, used in refusals and the send log ("recipient:1/60s"). */
export function ruleName(scope: string, rule: RateRule): string {
  return `${scope}:${rule.limit}/${rule.windowSeconds}s`;
}
