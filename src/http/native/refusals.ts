import { OTP_ERROR_CODES, type OtpErrorCode } from "../../core/errors.js";
import { NATIVE_ERROR_STATUS, statusTitle } from "./error-map.js";
import { Problem } from "./schemas.js";

// What any native route can be refused: its input (schema, JSON, content type, malformed text),
// the API key and its app, and a backend that does not answer (the app's lookup included).
const ANY_ROUTE = [
  "VALIDATION_FAILED",
  "UNAUTHENTICATED",
  "APP_NOT_FOUND",
  "APP_DISABLED",
  "STORE_UNAVAILABLE",
] as const satisfies readonly OtpErrorCode[];
// What a route whose body is read (every POST, with or without a body schema) adds.
const BODY_READ = [...ANY_ROUTE, "BODY_TOO_LARGE"] as const satisfies readonly OtpErrorCode[];
const CODE_OUTCOMES = [
  "CODE_EXPIRED",
  "CODE_SUPERSEDED",
  "CODE_CANCELED",
  "CODE_ALREADY_USED",
  "TOO_MANY_ATTEMPTS",
] as const satisfies readonly OtpErrorCode[];

/**
 * The core codes each native route can answer, by operationId: read from its handler and the core
 * calls it makes (send-code.ts and the account rules, check-code.ts, manage-verification.ts,
 * redeem-token.ts, the captcha service). Its refusal statuses, both those `/docs` lists and those
 * its response schemas serialize, are derived from these through NATIVE_ERROR_STATUS; the suite in
 * `src/http/openapi.test.ts` checks real refusals against what they document.
 */
export const NATIVE_REFUSALS = {
  sendVerification: [
    ...BODY_READ,
    "CHANNEL_DISABLED",
    "PUMPING_DENIED",
    "ACCOUNT_EXISTS",
    "ACCOUNT_NOT_FOUND",
    "LOGIN_REQUIRED",
    "CONTACT_ALREADY_SET",
    "CONTACT_MISSING",
    "CAPTCHA_REQUIRED",
    "CAPTCHA_FAILED",
    "CAPTCHA_UNAVAILABLE",
    "RESEND_TOO_SOON",
    "RATE_LIMITED",
    "TEMPLATE_MISSING",
  ],
  createCaptcha: [...BODY_READ, "RATE_LIMITED"],
  solveCaptcha: [...BODY_READ, "CAPTCHA_FAILED", "RATE_LIMITED"],
  checkVerification: [...BODY_READ, "VERIFICATION_NOT_FOUND", "CODE_INVALID", ...CODE_OUTCOMES],
  getVerification: [...ANY_ROUTE, "VERIFICATION_NOT_FOUND"],
  cancelVerification: [...BODY_READ, "VERIFICATION_NOT_FOUND", ...CODE_OUTCOMES],
  redeemToken: [...BODY_READ, "TOKEN_INVALID"],
} as const satisfies Record<string, readonly OtpErrorCode[]>;

export type NativeOperation = keyof typeof NATIVE_REFUSALS;

/** A route's codes grouped by the status each is answered with, in status order. */
export function refusalsByStatus(codes: readonly OtpErrorCode[]): Map<number, OtpErrorCode[]> {
  const byStatus = new Map<number, OtpErrorCode[]>();
  for (const code of codes) {
    const status = NATIVE_ERROR_STATUS[code];
    byStatus.set(status, [...(byStatus.get(status) ?? []), code]);
  }
  return new Map([...byStatus].sort(([a], [b]) => a - b));
}

/**
 * The problem schemas that serialize a route's refusals, one per status it can answer. A 500 has
 * none, as before: it is rare, and `/docs` describes it (openapi.ts).
 */
export function problemResponses(operation: NativeOperation): Record<number, typeof Problem> {
  const responses: Record<number, typeof Problem> = {};
  for (const status of refusalsByStatus(NATIVE_REFUSALS[operation]).keys()) {
    if (status !== 500) responses[status] = Problem;
  }
  return responses;
}

/** What `/docs` says of one refusal status of a route: its title, and the codes it carries with their meaning. */
export function describeRefusals(status: number, codes: readonly OtpErrorCode[]): string {
  return `${statusTitle(status)}: ${codes.map((code) => `${code} (${OTP_ERROR_CODES[code]})`).join("; ")}`;
}
