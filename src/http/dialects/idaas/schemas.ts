import Type from "typebox";
import type { AccountRule, Channel, Purpose } from "../../../core/types.js";

// Every body field is optional to the schema: IDaaS answers a missing or empty field with that
// field's own code (USER.0004, PARAM.0007, ...), which the handler decides in the documented order.
// The schema still refuses wrong types and oversized values (PARAM.1001) before any core call.
const text = (maxLength: number, description: string) =>
  Type.Optional(Type.String({ maxLength, description }));

// IDaaS is a Java service reading bodies with Jackson's defaults, which take a JSON number given
// for a String field as its text: a client that posts a mobile or a code typed as a number is
// served there. These fields take a non-negative integer too, read as its decimal digits (routes.ts
// `textOf`; the rule the Fresns face applies to `account`); past 2^53 a client's encoder has
// already rounded it, so the schema refuses it (PARAM.1001). Passwords take text only: a numeric
// one would be rounded unseen and stored as the user never typed it.
const digits = (maxLength: number, description: string) =>
  Type.Optional(
    Type.Union([Type.String({ maxLength }), Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER })], {
      description: `${description}; a non-negative integer is read as its digits`,
    }),
  );

const EMAIL_MAX = 254;
const MOBILE_MAX = 64;
// "<pass token>---<point_json>"; an encrypted point is under 100 characters.
const CAPTCHA_TOKEN_MAX = 2300;
const POINT_JSON_MAX = 2048;
const CODE_MAX = 32;

export const CaptchaVerifyBody = Type.Object({
  point_json: text(
    POINT_JSON_MAX,
    'slider answer: {"x":237.0,"y":5.0}, plain or AES-encrypted with secretKey',
  ),
  token: text(128, "the challenge token from GET /api/v2/sdk/captcha"),
  sender: digits(EMAIL_MAX, "the mobile number or e-mail the code will be sent to; the pass is bound to it"),
});

const sendFields = {
  type: text(64, "sending scenario"),
  captcha_token: text(CAPTCHA_TOKEN_MAX, "<pass token>---<point_json>, from POST /api/v2/sdk/captcha/verify"),
};

export const EmailSendBody = Type.Object({ email: text(EMAIL_MAX, "recipient e-mail"), ...sendFields });
export const SmsSendBody = Type.Object({
  mobile: digits(MOBILE_MAX, "recipient mobile; a national number is read in VERIFYD_DEFAULT_COUNTRY"),
  ...sendFields,
});

export const EmailLoginBody = Type.Object({
  email: text(EMAIL_MAX, "the e-mail the LOGIN_EMS code was sent to"),
  verify_code: digits(CODE_MAX, "the code"),
});
export const SmsLoginBody = Type.Object({
  mobile: digits(MOBILE_MAX, "the mobile the LOGIN_SMS code was sent to"),
  verify_code: digits(CODE_MAX, "the code"),
});

/** The profile fields of IDaaS registration (COMPANION-APIS.md 3.5), kept in the account's profile. */
export const PROFILE_FIELDS = [
  "name",
  "head_img",
  "attr_gender",
  "attr_birthday",
  "attr_nick_name",
  "mailing_address",
  "zip_code",
  "first_name",
  "middle_name",
  "last_name",
  "industry",
] as const;

// A postal code and a gender code are numbers to some clients.
const NUMERIC_PROFILE_FIELDS: ReadonlySet<string> = new Set(["zip_code", "attr_gender"]);

const profileSchema = Object.fromEntries(
  PROFILE_FIELDS.map((field) => [
    field,
    NUMERIC_PROFILE_FIELDS.has(field) ? digits(256, field) : text(field === "head_img" ? 2048 : 256, field),
  ]),
) as Record<(typeof PROFILE_FIELDS)[number], ReturnType<typeof digits>>;

/** 8-128 characters; empty reads as absent (no password at registration, PARAM.1007 at a reset). */
const password = (description: string) =>
  Type.Optional(Type.String({ maxLength: 128, pattern: "^(?:|[\\s\\S]{8,})$", description }));

const registerFields = {
  verify_code: digits(CODE_MAX, "the code"),
  pwd: password("password (8-128 characters); optional"),
  user_name: digits(
    64,
    "user name; unique in the app: no control or invisible characters, no @, no leading + or space",
  ),
  ...profileSchema,
  extension: Type.Optional(
    Type.Record(
      Type.String({ maxLength: 64 }),
      Type.Union([Type.String({ maxLength: 1024 }), Type.Number(), Type.Boolean(), Type.Null()]),
      { maxProperties: 50, description: "extension attributes" },
    ),
  ),
};

export const EmailRegisterBody = Type.Object({
  email: text(EMAIL_MAX, "the e-mail the REGISTER_EMS code was sent to"),
  mobile: digits(MOBILE_MAX, "kept in the profile as unverified_mobile; not a login contact"),
  ...registerFields,
});
export const SmsRegisterBody = Type.Object({
  mobile: digits(MOBILE_MAX, "the mobile the REGISTER_SMS code was sent to"),
  email: text(EMAIL_MAX, "kept in the profile as unverified_email; not a login contact"),
  ...registerFields,
});

// pwd/update-by-email and pwd/update-by-mobile: with the contact, a forgotten password's reset by
// its FORGET_PWD_* code; without it, a logged-in account's change by an UPDATE_PWD_* code sent to
// its own contact.
const passwordFields = {
  verify_code: digits(
    CODE_MAX,
    "the FORGET_PWD_* code sent to the contact, or the UPDATE_PWD_* code sent to the logged-in account's own",
  ),
  password: password("the new password (8-128 characters)"),
};
export const EmailPasswordBody = Type.Object({
  email: text(EMAIL_MAX, "the e-mail the FORGET_PWD_EMS code was sent to; absent for a logged-in change"),
  ...passwordFields,
});
export const MobilePasswordBody = Type.Object({
  mobile: digits(MOBILE_MAX, "the mobile the FORGET_PWD_SMS code was sent to; absent for a logged-in change"),
  ...passwordFields,
});

// profile/update-email and profile/update-mobile (Bamboocloud's "Update Personal Email / Mobile
// Number"): a logged-in account's new contact, proven by the code sent there.
export const EmailProfileBody = Type.Object({
  email: text(EMAIL_MAX, "the new e-mail, where the UPDATE_EMAIL_EMS or BIND_EMAIL_EMS code was sent"),
  verify_code: digits(CODE_MAX, "the code"),
});
export const MobileProfileBody = Type.Object({
  mobile: digits(MOBILE_MAX, "the new mobile, where the UPDATE_MOBILE_SMS or BIND_MOBILE_SMS code was sent"),
  verify_code: digits(CODE_MAX, "the code"),
});

/** AJ-Captcha's `CaptchaVO`: every key present, the unused ones null (COMPANION-APIS.md 3.1). */
export const CaptchaReply = Type.Object({
  captchaId: Type.Null(),
  projectCode: Type.Null(),
  captchaOriginalPath: Type.Null(),
  captchaFontType: Type.Null(),
  captchaFontSize: Type.Null(),
  secretKey: Type.String({ description: "AES key for encrypting point_json (not a secret)" }),
  originalImageBase64: Type.String({ description: "background PNG, base64" }),
  point: Type.Null(),
  jigsawImageBase64: Type.String({ description: "piece PNG (as tall as the background), base64" }),
  wordList: Type.Null(),
  pointList: Type.Null(),
  pointJson: Type.Null(),
  token: Type.String(),
  result: Type.Literal(false),
  captchaVerification: Type.Null(),
});

export const CaptchaVerifyReply = Type.Object({
  captcha_token: Type.String({
    description: "<pass token>---<point_json>; single use, 600 s, bound to sender",
  }),
});

export const SessionReply = Type.Object({
  session_token: Type.String(),
  expire: Type.Integer({ description: "seconds the session lives" }),
  status: Type.Literal("SUCCESS"),
  id_token: Type.String({ description: "HS256 JWT: sub = account id, aud = X-client-id" }),
});

export const ErrorReply = Type.Object({ error_code: Type.String(), error_msg: Type.String() });

/** What an IDaaS sending scenario means to core (DESIGN.md "Purposes and account rules"). */
export interface Scenario {
  purpose: Purpose;
  rule: AccountRule;
}

// Maps, not object literals: a `type` such as "constructor" must not find a prototype member.
export const SCENARIOS: Record<Channel, ReadonlyMap<string, Scenario>> = {
  email: new Map<string, Scenario>([
    ["REGISTER_EMS", { purpose: "sign_up", rule: "must_not_exist" }],
    ["LOGIN_EMS", { purpose: "sign_in", rule: "must_exist" }],
    ["FORGET_PWD_EMS", { purpose: "reset_password", rule: "must_exist" }],
    ["BIND_EMAIL_EMS", { purpose: "bind_contact", rule: "logged_in_contact_blank" }],
    ["UPDATE_PWD_EMS", { purpose: "change_password", rule: "must_exist" }],
    ["UPDATE_EMAIL_EMS", { purpose: "change_contact", rule: "must_not_exist" }],
  ]),
  sms: new Map<string, Scenario>([
    ["REGISTER_SMS", { purpose: "sign_up", rule: "must_not_exist" }],
    ["LOGIN_SMS", { purpose: "sign_in", rule: "must_exist" }],
    ["FORGET_PWD_SMS", { purpose: "reset_password", rule: "must_exist" }],
    ["BIND_MOBILE_SMS", { purpose: "bind_contact", rule: "logged_in_contact_blank" }],
    ["UPDATE_PWD_SMS", { purpose: "change_password", rule: "must_exist" }],
    ["UPDATE_MOBILE_SMS", { purpose: "change_contact", rule: "must_not_exist" }],
  ]),
};
