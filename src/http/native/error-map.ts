import type { OtpErrorCode } from "../../core/errors.js";

/**
 * The native face's total map from core codes to HTTP statuses (DESIGN.md "Native API"). Adding a
 * code to the registry fails the type-check until it is mapped here.
 */
export const NATIVE_ERROR_STATUS: Record<OtpErrorCode, number> = {
  VALIDATION_FAILED: 400,
  BODY_TOO_LARGE: 413,
  RECIPIENT_INVALID: 400,
  CHANNEL_DISABLED: 403,
  APP_NOT_FOUND: 401,
  APP_DISABLED: 403,
  UNAUTHENTICATED: 401,
  SIGNATURE_INVALID: 401,
  ACCOUNT_EXISTS: 409,
  ACCOUNT_NOT_FOUND: 409,
  LOGIN_REQUIRED: 409,
  CONTACT_ALREADY_SET: 409,
  CONTACT_MISSING: 409,
  PASSWORD_INVALID: 401,
  ACCOUNT_LOCKED: 429,
  VERIFICATION_NOT_FOUND: 404,
  CODE_INVALID: 422,
  CODE_EXPIRED: 410,
  CODE_SUPERSEDED: 410,
  CODE_CANCELED: 410,
  CODE_ALREADY_USED: 410,
  TOO_MANY_ATTEMPTS: 429,
  TOKEN_INVALID: 404,
  RESEND_TOO_SOON: 429,
  RATE_LIMITED: 429,
  CAPTCHA_REQUIRED: 428,
  CAPTCHA_FAILED: 400,
  // The app's captcha vendor did not judge the token (an outage, the app's wrong secret): nothing
  // the client sent was wrong, and the same request may pass later.
  CAPTCHA_UNAVAILABLE: 503,
  PUMPING_DENIED: 403,
  // The app has no template for the send's purpose and locale: a server-side configuration fault
  // (DESIGN.md keeps 422 for a wrong code), which no retry by the client mends.
  TEMPLATE_MISSING: 500,
  DELIVERY_FAILED: 503,
  STORE_UNAVAILABLE: 503,
};

const TITLES: Record<number, string> = {
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  409: "Conflict",
  410: "Gone",
  413: "Content Too Large",
  415: "Unsupported Media Type",
  422: "Unprocessable Content",
  428: "Precondition Required",
  429: "Too Many Requests",
  500: "Internal Server Error",
  503: "Service Unavailable",
};

export function statusTitle(status: number): string {
  return TITLES[status] ?? "Error";
}
