/**
 * The one error registry of verifyd. Core throws only `OtpError` with one of these codes; every
 * API face (native, Fresns, CloudBase, IDaaS) keeps a total `Record<OtpErrorCode, …>` map to its
 * own wire error, so adding a code here fails the type-check until every face maps it.
 *
 * The value is the public, client-safe default message; dialects may word it their own way.
 */
export const OTP_ERROR_CODES = {
  // validation
  VALIDATION_FAILED: "The request is invalid",
  BODY_TOO_LARGE: "The request body is too large",
  RECIPIENT_INVALID: "The recipient is not a valid email address or phone number",
  CHANNEL_DISABLED: "This channel is not available",
  // apps and authentication
  APP_NOT_FOUND: "Unknown app",
  APP_DISABLED: "This app is disabled",
  UNAUTHENTICATED: "Missing or invalid credentials",
  SIGNATURE_INVALID: "The request signature is invalid",
  // account rules
  ACCOUNT_EXISTS: "An account with this contact already exists",
  ACCOUNT_NOT_FOUND: "No account with this contact exists",
  LOGIN_REQUIRED: "This action requires a logged-in account",
  CONTACT_ALREADY_SET: "The account already has a contact of this channel",
  CONTACT_MISSING: "The account has no contact of this channel",
  PASSWORD_INVALID: "The username or password is wrong",
  ACCOUNT_LOCKED: "Too many failed logins; try again later",
  // codes and tokens
  VERIFICATION_NOT_FOUND: "Unknown verification",
  CODE_INVALID: "The code is wrong",
  CODE_EXPIRED: "The code has expired",
  CODE_SUPERSEDED: "A newer code was sent; use that one",
  CODE_CANCELED: "The verification was canceled",
  CODE_ALREADY_USED: "The code was already used",
  TOO_MANY_ATTEMPTS: "Too many wrong codes; request a new one",
  TOKEN_INVALID: "The verification token is invalid, expired or already used",
  // rate limits and abuse defence
  RESEND_TOO_SOON: "Please wait before requesting another code",
  RATE_LIMITED: "Too many requests; try again later",
  CAPTCHA_REQUIRED: "A captcha must be solved first",
  CAPTCHA_FAILED: "The captcha answer is wrong, expired or already used",
  CAPTCHA_UNAVAILABLE: "The captcha cannot be checked now; try again shortly",
  PUMPING_DENIED: "Sending to this destination is not allowed",
  // delivery and backends
  TEMPLATE_MISSING: "No message template for this purpose",
  DELIVERY_FAILED: "The message could not be delivered",
  STORE_UNAVAILABLE: "A backend is unavailable; try again shortly",
} as const;

export type OtpErrorCode = keyof typeof OTP_ERROR_CODES;

/** Typed, client-safe details; `field` names the input at fault. */
export interface OtpErrorDetails {
  field?: string;
  retryAfterSeconds?: number;
  attemptsRemaining?: number;
  /** the rule that refused (rate limits, abuse defence); safe to show */
  rule?: string;
}

/**
 * The only error core throws. `message` is safe for clients; `internal` and `cause` go to logs only.
 */
export class OtpError extends Error {
  readonly code: OtpErrorCode;
  readonly details: OtpErrorDetails;
  readonly internal: string | undefined;

  constructor(
    code: OtpErrorCode,
    options: { message?: string; details?: OtpErrorDetails; internal?: string; cause?: unknown } = {},
  ) {
    // These are expected outcomes (a wrong code, a refusal), thrown on hot paths under attack;
    // a stack trace would cost more than the rest of the refusal and tell nothing. A limit that is
    // not a number skips V8's stack walk altogether; a limit of 0 still walked it (~1 µs of a
    // captcha refusal).
    const limit = Error.stackTraceLimit;
    (Error as { stackTraceLimit?: number }).stackTraceLimit = undefined;
    // Without a cause, no options object: an own `cause: undefined` would cost a property per error.
    super(
      options.message ?? OTP_ERROR_CODES[code],
      options.cause === undefined ? undefined : { cause: options.cause },
    );
    Error.stackTraceLimit = limit;
    this.name = "OtpError";
    this.code = code;
    this.details = options.details ?? {};
    this.internal = options.internal;
  }
}

export function isOtpError(value: unknown): value is OtpError {
  return value instanceof OtpError;
}

/** Shorthand for the most common failure: a named input is invalid. */
export function invalidField(field: string, message: string): OtpError {
  return new OtpError("VALIDATION_FAILED", { message, details: { field } });
}
