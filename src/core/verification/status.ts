import type { CodeRecord, VerificationStatus } from "../types.js";

/** The public status: stored state plus what time and attempts imply. */
export function statusOf(record: CodeRecord, nowMs: number): VerificationStatus {
  if (record.status !== "pending") return record.status;
  if (record.attempts >= record.maxAttempts) return "max_attempts_reached";
  if (nowMs >= record.expiresAtMs) return "expired";
  return "pending";
}

export function secondsUntil(atMs: number, nowMs: number): number {
  return Math.max(0, Math.ceil((atMs - nowMs) / 1000));
}
