import type { CounterKind } from "../ports.js";

/**
 * Which refusal a caller sees when several rules refuse: a denial is final, a rate limit must be
 * waited out (a captcha would not help), a captcha can be solved now; then the longest wait.
 */
export function outranks(
  a: { refusal: CounterKind; retryAfterSeconds: number },
  b: { refusal: CounterKind; retryAfterSeconds: number },
): boolean {
  const rank = { deny: 3, limit: 2, captcha: 1 } as const;
  if (rank[a.refusal] !== rank[b.refusal]) return rank[a.refusal] > rank[b.refusal];
  return a.retryAfterSeconds > b.retryAfterSeconds;
}
