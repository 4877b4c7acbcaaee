import type { OtpError, OtpErrorCode } from "../../../core/errors.js";
import type { Channel } from "../../../core/types.js";
import { FRESNS_CODE_MESSAGES, type FresnsCode } from "./code-messages.js";

export type { FresnsCode } from "./code-messages.js";

/** The languages Fresns ships its code messages in. */
export type FresnsLang = "en" | "zh-Hans" | "zh-Hant";

/** Where Fresns answers the same outcome with one code per channel (34205 email / 34206 phone). */
export type FresnsCodeByChannel = { email: FresnsCode; sms: FresnsCode };

/**
 * The Fresns face's total map from core codes to Fresns numeric codes (COMPANION-APIS.md 1.6).
 * Adding a code to the registry fails the type-check until it is mapped here. Fresns has no
 * captcha step, so every abuse-defence refusal is its "too often" 33201 (DESIGN.md "Apps"); it has
 * no attempt limit either, so every dead or wrong code is its one "incorrect or expired" 33203.
 */
export const FRESNS_ERROR_CODES: Record<OtpErrorCode, FresnsCode | FresnsCodeByChannel> = {
  VALIDATION_FAILED: 30000,
  BODY_TOO_LARGE: 30000,
  RECIPIENT_INVALID: { email: 34101, sms: 34102 },
  CHANNEL_DISABLED: 32100,
  APP_NOT_FOUND: 31301,
  APP_DISABLED: 31301,
  UNAUTHENTICATED: 31505,
  SIGNATURE_INVALID: 31302,
  ACCOUNT_EXISTS: { email: 34205, sms: 34206 },
  ACCOUNT_NOT_FOUND: 34301,
  LOGIN_REQUIRED: 31501,
  CONTACT_ALREADY_SET: { email: 34401, sms: 34402 },
  // A send to the account's own contact (useType 4) that it has none of: Fresns puts the empty
  // contact through its DTO, whose `required` rule fails (COMPANION-APIS.md 1.1, step 12).
  CONTACT_MISSING: 30000,
  PASSWORD_INVALID: 34304,
  ACCOUNT_LOCKED: 34306,
  VERIFICATION_NOT_FOUND: 33203,
  CODE_INVALID: 33203,
  CODE_EXPIRED: 33203,
  CODE_SUPERSEDED: 33203,
  CODE_CANCELED: 33203,
  CODE_ALREADY_USED: 33203,
  TOO_MANY_ATTEMPTS: 33203,
  TOKEN_INVALID: 33203,
  RESEND_TOO_SOON: 33201,
  RATE_LIMITED: 33201,
  CAPTCHA_REQUIRED: 33201,
  CAPTCHA_FAILED: 33201,
  // (Fresns's routes take no captcha token, so none reaches a vendor.)
  CAPTCHA_UNAVAILABLE: 33201,
  // A denied destination: a blocked email domain reads as Fresns's "domain not supported", a
  // denied phone country as its "country calling code error".
  PUMPING_DENIED: { email: 34110, sms: 34103 },
  TEMPLATE_MISSING: 33200,
  DELIVERY_FAILED: 32302,
  STORE_UNAVAILABLE: 32301,
};

/** Body fields that carry a verification code: a code of the wrong shape is just a wrong code to Fresns. */
const CODE_FIELDS = new Set(["verifyCode", "newVerifyCode"]);
/** Body fields the core parses as a recipient: the core refusing one means the address is unusable. */
const RECIPIENT_FIELDS = new Set(["account", "newEmail", "newPhone"]);

/**
 * The Fresns code of a core error. `channel` picks the code where Fresns has one per channel
 * (the request's email or sms; email when the request named none).
 */
export function fresnsCodeOf(error: OtpError, channel: Channel | undefined): FresnsCode {
  let rule = FRESNS_ERROR_CODES[error.code];
  const field = error.details.field;
  if (error.code === "VALIDATION_FAILED" && field !== undefined) {
    if (CODE_FIELDS.has(field)) rule = 33203;
    else if (RECIPIENT_FIELDS.has(field)) rule = FRESNS_ERROR_CODES.RECIPIENT_INVALID;
  }
  return typeof rule === "number" ? rule : rule[channel ?? "email"];
}

/** The message Fresns shows for a code, in the caller's language. */
export function fresnsMessage(code: FresnsCode, lang: FresnsLang): string {
  return FRESNS_CODE_MESSAGES[code][lang];
}

/**
 * A refusal decided by the Fresns wire itself (header, signature, session headers, Laravel-style
 * body validation), never by core: it already carries its Fresns code, and its message when the
 * table's would not name the field at fault.
 */
export class FresnsRefusal extends Error {
  readonly code: FresnsCode;
  readonly custom: boolean;

  constructor(code: FresnsCode, message?: string) {
    super(message ?? `Fresns ${code}`);
    this.name = "FresnsRefusal";
    this.code = code;
    this.custom = message !== undefined;
  }

  messageIn(lang: FresnsLang): string {
    return this.custom ? this.message : fresnsMessage(this.code, lang);
  }
}
