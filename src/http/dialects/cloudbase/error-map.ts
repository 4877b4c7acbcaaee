import type { FastifyReply, FastifyRequest } from "fastify";
import type { OtpError, OtpErrorCode } from "../../../core/errors.js";
import { setRetryAfter, toOtpError } from "../../problem.js";
import { answeredBug, answeredError } from "../../shared/answered-errors.js";

/** One CloudBase wire error: HTTP status, the `error` name, its integer `error_code`. */
export interface CloudbaseError {
  status: number;
  error: string;
  errorCode: number;
  /** the `error_description`; default: the core's client-safe message */
  describe?: (error: OtpError, context: CloudbaseErrorContext) => string;
}

/** What the failing request was doing, where the wording depends on it. */
export interface CloudbaseErrorContext {
  /** a send (`POST /auth/v1/verification`), whose rate limits the seed words */
  sendingCode: boolean;
}

/** The context of the send route's refusals. */
export const SENDING_CODE: CloudbaseErrorContext = { sendingCode: true };
const NOT_SENDING: CloudbaseErrorContext = { sendingCode: false };

const seconds = (count: number) => `${count} ${count === 1 ? "second" : "seconds"}`;
/** "N seconds" (or "1 second") to wait: the refusal's own wait, a minute without one. */
const tryAgainIn = (error: OtpError) => seconds(error.details.retryAfterSeconds ?? 60);
// A core message that already says when to try again ("try again shortly"): that clause, to be
// replaced by the real wait rather than followed by it.
const SAYS_WHEN = /try again\b[^;]*$/;

// The seed's four pairs (captcha_required 4028, invalid_phone_number 4001, user_not_found 4004,
// rate_limit_exceeded 4029) are kept exactly, with the seed's wording; every other failure uses a
// name from the CloudBase SDK's ErrorType enum, because the SDK and the apps built on it branch on
// `error` (e.g. `invalid_grant` at refresh clears the stored credentials).
const RATE_LIMIT_EXCEEDED: CloudbaseError = {
  status: 429,
  error: "rate_limit_exceeded",
  errorCode: 4029,
  // The seed's words name the send; a limit elsewhere (fetching captchas) must not claim a send.
  describe: (error, context) =>
    context.sendingCode
      ? `Verification code send frequency too high, please try again in ${tryAgainIn(error)}`
      : `Too many requests, please try again in ${tryAgainIn(error)}`,
};

/**
 * The CloudBase face's total map from core codes to wire errors (COMPANION-APIS.md 2.6). Adding a
 * code to the registry fails the type-check until it is mapped here. `ERRORS.md` beside this file
 * publishes the same table.
 */
export const CLOUDBASE_ERRORS: Record<OtpErrorCode, CloudbaseError> = {
  VALIDATION_FAILED: { status: 400, error: "invalid_argument", errorCode: 4000 },
  BODY_TOO_LARGE: { status: 413, error: "invalid_argument", errorCode: 4013 },
  RECIPIENT_INVALID: { status: 400, error: "invalid_argument", errorCode: 4000 },
  CHANNEL_DISABLED: { status: 403, error: "permission_denied", errorCode: 4031 },
  APP_NOT_FOUND: {
    status: 404,
    error: "not_found",
    errorCode: 4017,
    describe: () => "Unknown client_id",
  },
  APP_DISABLED: { status: 403, error: "permission_denied", errorCode: 4030 },
  UNAUTHENTICATED: { status: 401, error: "unauthenticated", errorCode: 4010 },
  LOGIN_REQUIRED: { status: 401, error: "unauthenticated", errorCode: 4010 },
  SIGNATURE_INVALID: { status: 401, error: "unauthenticated", errorCode: 4011 },
  ACCOUNT_EXISTS: { status: 409, error: "already_exists", errorCode: 4009 },
  ACCOUNT_NOT_FOUND: {
    status: 404,
    error: "user_not_found",
    errorCode: 4004,
    describe: () => "User does not exist",
  },
  CONTACT_ALREADY_SET: { status: 409, error: "already_exists", errorCode: 4019 },
  CONTACT_MISSING: { status: 400, error: "failed_precondition", errorCode: 4012 },
  PASSWORD_INVALID: { status: 400, error: "invalid_password", errorCode: 4003 },
  ACCOUNT_LOCKED: {
    status: 429,
    error: "resource_exhausted",
    errorCode: 4026,
    describe: (error) => `Too many failed logins; try again in ${tryAgainIn(error)}`,
  },
  VERIFICATION_NOT_FOUND: { status: 404, error: "not_found", errorCode: 4016 },
  CODE_INVALID: {
    status: 400,
    error: "invalid_verification_code",
    errorCode: 4002,
    describe: (error) => {
      const left = error.details.attemptsRemaining;
      // No count for a check by recipient (sign-up by code): there core answers a recipient with
      // no pending code as a wrong code, and a count would tell the two apart (check-code.ts).
      if (left === undefined) return "The verification code is wrong";
      return left > 0
        ? `The verification code is wrong; ${left} ${left === 1 ? "attempt" : "attempts"} left`
        : "The verification code is wrong; request a new one";
    },
  },
  CODE_EXPIRED: { status: 400, error: "invalid_verification_code", errorCode: 4005 },
  CODE_SUPERSEDED: { status: 400, error: "invalid_verification_code", errorCode: 4006 },
  CODE_CANCELED: { status: 400, error: "invalid_verification_code", errorCode: 4007 },
  CODE_ALREADY_USED: { status: 400, error: "invalid_verification_code", errorCode: 4008 },
  TOO_MANY_ATTEMPTS: { status: 429, error: "resource_exhausted", errorCode: 4025 },
  TOKEN_INVALID: { status: 400, error: "invalid_grant", errorCode: 4015 },
  RESEND_TOO_SOON: RATE_LIMIT_EXCEEDED,
  RATE_LIMITED: RATE_LIMIT_EXCEEDED,
  CAPTCHA_REQUIRED: {
    status: 428,
    error: "captcha_required",
    errorCode: 4028,
    describe: () => "Need to complete image verification code verification",
  },
  CAPTCHA_FAILED: { status: 400, error: "captcha_invalid", errorCode: 4027 },
  CAPTCHA_UNAVAILABLE: { status: 503, error: "unavailable", errorCode: 4055 },
  PUMPING_DENIED: { status: 403, error: "permission_denied", errorCode: 4032 },
  TEMPLATE_MISSING: { status: 500, error: "internal", errorCode: 4051 },
  DELIVERY_FAILED: { status: 503, error: "unavailable", errorCode: 4053 },
  STORE_UNAVAILABLE: { status: 503, error: "unavailable", errorCode: 4054 },
};

/**
 * Invalid input in these fields has a more specific CloudBase answer than `invalid_argument`: a
 * phone number the core cannot use is the seed's `invalid_phone_number`, and a code of the wrong
 * shape is just a wrong code to a CloudBase client.
 */
export const CLOUDBASE_FIELD_ERRORS: Readonly<Record<string, CloudbaseError>> = {
  phone_number: {
    status: 400,
    error: "invalid_phone_number",
    errorCode: 4001,
    describe: () => 'Phone number format error, needs a country code prefix such as "+86 "',
  },
  verification_code: { status: 400, error: "invalid_verification_code", errorCode: 4002 },
};

/** Anything that is not an OtpError is a bug: logged, answered with this and the request id. */
export const CLOUDBASE_INTERNAL_ERROR: CloudbaseError = { status: 500, error: "internal", errorCode: 4050 };

/** An unknown path under /auth/v1: no core error is involved, so it is answered directly. */
export const CLOUDBASE_ROUTE_NOT_FOUND = {
  status: 404,
  body: { error: "not_found", error_code: 4040, error_description: "Unknown endpoint" },
} as const;

export interface CloudbaseErrorBody {
  error: string;
  error_code: number;
  error_description: string;
}

/** The wire error of a core error: the field-specific answer where one exists, else the code's. */
export function cloudbaseErrorOf(
  error: OtpError,
  context: CloudbaseErrorContext = NOT_SENDING,
): { status: number; body: CloudbaseErrorBody } {
  const field = error.details.field;
  const byField =
    (error.code === "VALIDATION_FAILED" || error.code === "RECIPIENT_INVALID") && field !== undefined
      ? CLOUDBASE_FIELD_ERRORS[field]
      : undefined;
  const wire = byField ?? CLOUDBASE_ERRORS[error.code];
  let description = wire.describe ? wire.describe(error, context) : error.message;
  const retryAfter = error.details.retryAfterSeconds;
  // A refusal always says how long to wait (DESIGN.md); entries with their own wording say it there.
  if (retryAfter !== undefined && !wire.describe) {
    const wait = `try again in ${seconds(retryAfter)}`;
    description = SAYS_WHEN.test(description)
      ? description.replace(SAYS_WHEN, wait)
      : `${description}; ${wait}`;
  }
  return {
    status: wire.status,
    body: { error: wire.error, error_code: wire.errorCode, error_description: description },
  };
}

/** The one CloudBase renderer: `{error, error_code, error_description}` with an HTTP status >= 400. */
export function renderCloudbaseError(
  error: unknown,
  request: FastifyRequest,
  reply: FastifyReply,
  context: CloudbaseErrorContext = NOT_SENDING,
): FastifyReply {
  const otpError = toOtpError(error, request);
  if (!otpError) {
    const requestId = answeredBug(request, "cloudbase", error);
    return reply.code(CLOUDBASE_INTERNAL_ERROR.status).send({
      error: CLOUDBASE_INTERNAL_ERROR.error,
      error_code: CLOUDBASE_INTERNAL_ERROR.errorCode,
      error_description: `An unexpected error occurred; quote request id ${requestId} when reporting it`,
    });
  }
  answeredError(request, "cloudbase", otpError);
  const { status, body } = cloudbaseErrorOf(otpError, context);
  setRetryAfter(reply, otpError);
  return reply.code(status).send(body);
}
