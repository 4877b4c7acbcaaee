import { noteKnownNumber, prefixVerifiedKey } from "../abuse/abuse-rules.js";
import { OtpError } from "../errors.js";
import { newTimeOrderedSecret, timeOrderedSecretKey } from "../ids.js";
import { resendWaitSeconds } from "../policy.js";
import type { AttemptOutcome, AttemptRefusal, CodeRef } from "../ports.js";
import { parseRecipient, phonePrefix } from "../recipients.js";
import type { App, Channel, CodeRecord, Purpose, TokenRecord } from "../types.js";
import type { EngineDeps } from "./engine-deps.js";
import { failedChecksKey, Slot } from "./keys.js";

/** Which code a check is about: a verification id (native, CloudBase) or the recipient's pending code. */
export type CheckTarget =
  | { id: string }
  | { channel: Channel; to: string; country?: string | undefined; purpose: Purpose; toField?: string };

export interface CheckCodeInput {
  app: App;
  target: CheckTarget;
  code: string;
  /**
   * `consume` approves and issues a token; `peek` compares and leaves the code pending for the next
   * call (Fresns `verify-identity`): its attempt is counted before the comparison like any other,
   * and given back when the code is right, so a right peek never uses up the code's attempts.
   */
  mode?: "consume" | "peek";
  /** which input field the code came from, so errors name the caller's field */
  codeField?: string;
}

export interface CheckCodeResult {
  record: CodeRecord;
  /** present when mode is `consume` */
  token?: string;
  tokenExpiresInSeconds?: number;
}

const REFUSAL_ERRORS: Record<AttemptRefusal, OtpError["code"]> = {
  expired: "CODE_EXPIRED",
  superseded: "CODE_SUPERSEDED",
  canceled: "CODE_CANCELED",
  approved: "CODE_ALREADY_USED",
  max_attempts: "TOO_MANY_ATTEMPTS",
  failure_budget: "TOO_MANY_ATTEMPTS",
};

/** Refusals that, checked by recipient, are answered as a wrong code (see `refusalOf`). */
const TELLS_A_CODE_WAS_SENT: ReadonlySet<AttemptRefusal> = new Set([
  "expired",
  "canceled",
  "approved",
  "superseded",
]);

/**
 * Checks a code. The attempt is counted atomically *before* comparing (kratos
 * `persister_code.go`), so concurrent guesses cannot exceed the cap; the comparison is constant
 * time; approval succeeds for exactly one caller.
 */
export async function checkCode(deps: EngineDeps, input: CheckCodeInput): Promise<CheckCodeResult> {
  const { app } = input;
  const codeField = input.codeField ?? "code";
  refuseMalformedCode(app, input.code, codeField);
  const ref = resolveRef(deps, app, input.target);
  const now = deps.clock.nowMs();
  if (input.mode === "peek") return peekRefs(deps, app, [ref], input.code, codeField, now);
  const tokenTtlSeconds = app.policy.tokenTtlSeconds;
  const tokenExpiresAtMs = now + tokenTtlSeconds * 1000;
  // A token is timed by its expiry, so a store keyed by it holds expired tokens first and can
  // purge them by key range, without an index of expiry to write on every approval.
  const mintToken = () => newTimeOrderedSecret("vt", tokenExpiresAtMs);
  const tokenFor = (record: CodeRecord, token: string): TokenRecord => ({
    tokenHash: timeOrderedSecretKey(token),
    appId: app.id,
    verificationId: record.id,
    channel: record.channel,
    to: record.to,
    purposes: record.tokenPurposes,
    expiresAtMs: tokenExpiresAtMs,
  });
  const consumeInOneStep = deps.store.attemptAndApprove?.bind(deps.store);
  let oneStepToken: string | undefined;
  const outcome = consumeInOneStep
    ? await consumeInOneStep(ref, app.policy.failedChecksPerRecipient, now, (record) => {
        if (!deps.secrets.codeMatches(record.id, input.code, record.codeHash)) return null;
        oneStepToken = mintToken();
        return tokenFor(record, oneStepToken);
      })
    : await deps.store.consumeAttempt(ref, app.policy.failedChecksPerRecipient, now);

  if (outcome.kind === "not_found" || outcome.kind === "refused")
    throw refusalOf(app, outcome, ref, codeField);

  if (outcome.kind === "approved") {
    await noteVerifiedSms(deps, app, outcome.record, now);
    return { record: outcome.record, token: oneStepToken as string, tokenExpiresInSeconds: tokenTtlSeconds };
  }
  const { record } = outcome;
  const failureKey = failedChecksKey(record.channel, record.to);
  // A one-step store has already judged this attempt: counted and not approved means wrong.
  if (consumeInOneStep || !deps.secrets.codeMatches(record.id, input.code, record.codeHash)) {
    throw wrongCode(record, ref, codeField);
  }

  const token = mintToken();
  const approved = await deps.store.approve(app.id, record.id, tokenFor(record, token), failureKey, now);
  // Another concurrent check with the same right code won the approval: single use. This one
  // was counted as a failure by `consumeAttempt`, and a right code is no failed check: given back,
  // or a double-click at each sign-in would wear down the recipient's daily failure budget.
  // Best-effort: the answer is the same either way.
  if (!approved) {
    await deps.store.refundAttempt(app.id, record.id, failureKey, now).catch(() => undefined);
    // (by recipient, as a one-step store answers the race's loser: see `refusalOf`)
    throw "id" in ref ? new OtpError("CODE_ALREADY_USED") : wrongCode(record, ref, codeField);
  }
  const approvedRecord: CodeRecord = { ...record, status: "approved" };
  await noteVerifiedSms(deps, app, approvedRecord, now);
  return { record: approvedRecord, token, tokenExpiresInSeconds: tokenTtlSeconds };
}

export interface PeekAnyCodeInput {
  app: App;
  /** the codes the value may be, most likely first */
  targets: CheckTarget[];
  code: string;
  codeField?: string;
}

/**
 * Peeks one value against the pending codes of several targets (Fresns `verify-identity`, which
 * filters by no template): right when it is any of them, and then no code is charged anything. A
 * code the value was compared with before the right one revealed nothing (the answer is the same
 * whichever code matched), so its attempt is given back too: a right call never wears down the
 * caller's other codes. A wrong call has told the caller that the value is none of them, so every
 * code compared keeps its counted attempt: 5 wrong values still kill each code.
 */
export async function peekAnyCode(deps: EngineDeps, input: PeekAnyCodeInput): Promise<CheckCodeResult> {
  const { app } = input;
  const codeField = input.codeField ?? "code";
  refuseMalformedCode(app, input.code, codeField);
  const refs = input.targets.map((target) => resolveRef(deps, app, target));
  return peekRefs(deps, app, refs, input.code, codeField, deps.clock.nowMs());
}

/**
 * Peeks in order until a code matches. Each attempt is counted before its comparison, as every
 * check's is, so concurrent peeks cannot pass a code's cap; a matching peek then gives back its own
 * attempt and those of the codes it passed on the way (`peekAnyCode`), atomically per code. While
 * a right peek is being judged its attempt is counted: a code's attempts are its wrong checks plus
 * the checks still in flight, so the cap can never admit a sixth guess. The price: a check that
 * arrives while a right peek holds a code's last attempt is refused (TOO_MANY_ATTEMPTS) though
 * the code will live on once the peek gives its attempt back.
 */
async function peekRefs(
  deps: EngineDeps,
  app: App,
  refs: CodeRef[],
  code: string,
  codeField: string,
  now: number,
): Promise<CheckCodeResult> {
  const compared: CodeRecord[] = [];
  let failure: OtpError | undefined;
  for (const ref of refs) {
    const outcome = await deps.store.consumeAttempt(ref, app.policy.failedChecksPerRecipient, now);
    if (outcome.kind !== "counted") {
      failure ??= refusalOf(app, outcome, ref, codeField);
      continue;
    }
    const { record } = outcome;
    if (!deps.secrets.codeMatches(record.id, code, record.codeHash)) {
      compared.push(record);
      failure ??= wrongCode(record, ref, codeField);
      continue;
    }
    for (const uncharged of [...compared, record]) {
      const failureKey = failedChecksKey(uncharged.channel, uncharged.to);
      await deps.store.refundAttempt(app.id, uncharged.id, failureKey, now);
    }
    return { record: { ...record, attempts: record.attempts - 1 } };
  }
  throw failure ?? new OtpError("CODE_INVALID", { details: { field: codeField } });
}

/** A code that cannot be right (wrong length or alphabet) is a client error, not a guess: it is refused without spending an attempt. */
function refuseMalformedCode(app: App, code: string, codeField: string): void {
  if (!/^\d+$/.test(code) || code.length !== app.policy.codeLength) {
    throw new OtpError("VALIDATION_FAILED", {
      message: `${codeField} must be ${app.policy.codeLength} digits`,
      details: { field: codeField },
    });
  }
}

function refusalOf(
  app: App,
  outcome: Exclude<AttemptOutcome, { kind: "counted" }>,
  ref: CodeRef,
  codeField: string,
): OtpError {
  if (outcome.kind === "not_found") {
    return "id" in ref
      ? new OtpError("VERIFICATION_NOT_FOUND", { details: { field: "id" } })
      : new OtpError("CODE_INVALID", { details: { field: codeField } });
  }
  // By recipient, "no pending code" must look exactly like a wrong code (see `wrongCode`), and so
  // must a code that expired, was canceled or was used: each would tell, for free and as often as
  // asked until the code is purged, that the recipient was sent one. A code worn out by guesses
  // cannot pass for none; the guesses that wore it out were counted.
  if (!("id" in ref) && TELLS_A_CODE_WAS_SENT.has(outcome.reason)) {
    return new OtpError("CODE_INVALID", { details: { field: codeField } });
  }
  // A code worn out by wrong guesses never succeeds again; what may is a new code, so the wait
  // a 429 must carry (DESIGN.md) is the one the resend rule sets after a send.
  const retryAfterSeconds =
    outcome.reason === "max_attempts" ? resendWaitSeconds(app.policy) : outcome.retryAfterSeconds;
  return new OtpError(REFUSAL_ERRORS[outcome.reason], {
    // A new code does not help a recipient out of failed checks: it must wait (Retry-After).
    ...(outcome.reason === "failure_budget"
      ? { message: "Too many wrong codes for this recipient; try again later" }
      : {}),
    details: {
      ...(retryAfterSeconds === undefined ? {} : { retryAfterSeconds }),
      ...(outcome.reason === "max_attempts" ? { attemptsRemaining: 0 } : {}),
    },
  });
}

/**
 * A wrong code's refusal. Checked by recipient, it says nothing of the attempts left: a recipient
 * with no pending code is refused as a wrong code, free and uncounted, and a count (4, 3, ... where
 * no code has none to give) would tell the two apart, and so which recipients were sent a code. By
 * id, the caller already holds what a count could reveal: the verification exists.
 */
function wrongCode(record: CodeRecord, ref: CodeRef, codeField: string): OtpError {
  if (!("id" in ref)) return new OtpError("CODE_INVALID", { details: { field: codeField } });
  return new OtpError("CODE_INVALID", {
    details: { field: codeField, attemptsRemaining: Math.max(0, record.maxAttempts - record.attempts) },
  });
}

/**
 * Counts an approved SMS code for its number prefix (the pumping watch's evidence of real users)
 * and marks the number known-good (its sends are let past a prefix's or country's block or
 * budget: see send-code.ts). The two writes go out together. The approval is committed by then:
 * a failure here is logged, never answered, for the caller would get a 503 for a code already
 * spent and its token lost.
 */
async function noteVerifiedSms(deps: EngineDeps, app: App, record: CodeRecord, now: number): Promise<void> {
  if (record.channel !== "sms") return;
  const prefix = phonePrefix(record.to, app.abuse.pumping.prefixDigits);
  const [counted, known] = await Promise.allSettled([
    prefix ? deps.counters.hit(app.id, prefixVerifiedKey(prefix), 3600, now) : undefined,
    noteKnownNumber(deps.counters, app.id, record.to, now),
  ]);
  if (counted.status === "rejected") {
    deps.logger.warn(
      { err: counted.reason, appId: app.id, prefix },
      "could not count a verified SMS for its prefix",
    );
  }
  if (known.status === "rejected") {
    deps.logger.warn({ err: known.reason, appId: app.id }, "could not mark a verified SMS number known");
  }
}

function resolveRef(deps: EngineDeps, app: App, target: CheckTarget): CodeRef {
  if ("id" in target) return { appId: app.id, id: target.id };
  const recipient = parseRecipient(target.channel, target.to, {
    country: target.country,
    defaultCountry: deps.defaultCountry,
    field: target.toField ?? "to",
  });
  return new Slot(app.id, target.channel, recipient.address, target.purpose, deps.secrets);
}
