import { OtpError } from "../errors.js";
import { resendWaitSeconds } from "../policy.js";
import type { App, CodeRecord, DeliveryRecord, VerificationStatus } from "../types.js";
import type { EngineDeps } from "./engine-deps.js";
import { statusOf } from "./status.js";

export interface VerificationView {
  record: CodeRecord;
  status: VerificationStatus;
  attemptsRemaining: number;
  deliveries: DeliveryRecord[];
}

/** A verification as its app sees it, with its delivery attempts. */
export async function getVerification(deps: EngineDeps, app: App, id: string): Promise<VerificationView> {
  const record = await deps.store.get(app.id, id);
  if (!record) throw new OtpError("VERIFICATION_NOT_FOUND", { details: { field: "id" } });
  const deliveries = await deps.store.deliveries(app.id, id);
  return {
    record,
    status: statusOf(record, deps.clock.nowMs()),
    attemptsRemaining: Math.max(0, record.maxAttempts - record.attempts),
    deliveries,
  };
}

/** Cancels a pending verification; canceling one that is no longer pending says why it cannot be. */
export async function cancelVerification(deps: EngineDeps, app: App, id: string): Promise<CodeRecord> {
  const now = deps.clock.nowMs();
  const record = await deps.store.cancel(app.id, id, now);
  if (!record) throw new OtpError("VERIFICATION_NOT_FOUND", { details: { field: "id" } });
  const status = statusOf(record, now);
  if (status === "canceled") return record;
  const refusal = {
    pending: "CODE_CANCELED",
    approved: "CODE_ALREADY_USED",
    expired: "CODE_EXPIRED",
    superseded: "CODE_SUPERSEDED",
    max_attempts_reached: "TOO_MANY_ATTEMPTS",
  } as const;
  // A 429 says how long to wait (DESIGN.md): for a worn-out code, until a new one may be sent.
  const details =
    status === "max_attempts_reached" ? { retryAfterSeconds: resendWaitSeconds(app.policy) } : {};
  throw new OtpError(refusal[status], { details });
}
