import Type, { type TSchema } from "typebox";
import { MAX_PASSWORD_CHARACTERS } from "../../../core/accounts/passwords.js";
import { type FresnsLang, FresnsRefusal } from "./error-map.js";

/**
 * The Fresns request bodies, as the Fresns v2.21.4 DTOs declare them (COMPANION-APIS.md 1.1, 1.5),
 * plus length bounds Fresns leaves to its database. Fresns validates with Laravel, and its clients
 * rely on Laravel's behaviour, which JSON Schema cannot express: fields are checked in declaration
 * order and the first failing rule's sentence is the message (`The use type field is required.`);
 * `integer` accepts numeric strings; `required_if` / `required_with` / `required_without`; empty
 * strings count as absent. So each body is a rule table read by `validateBody`, and the JSON Schema
 * served at /docs is generated from the same table.
 */

type FieldType = "string" | "integer" | "scalar" | "boolean";
type Requirement =
  | true
  | { if: { field: string; values: readonly (string | number)[] } }
  | { with: readonly string[] }
  | { without: readonly string[] };

export interface FieldSpec {
  /** `scalar`: a string or a number, read as a string (Fresns `account`: email or phone number) */
  type: FieldType;
  required?: Requirement;
  in?: readonly (string | number)[];
  between?: readonly [number, number];
  email?: boolean;
  maxLength?: number;
  description: string;
}

export type BodySpec = Record<string, FieldSpec>;

type ValueOf<Spec extends FieldSpec> = Spec["type"] extends "integer"
  ? number
  : Spec["type"] extends "boolean"
    ? boolean
    : string;

/** What `validateBody` returns: each field typed by its rule, absent when not given. */
export type Body<Spec extends BodySpec> = { [Field in keyof Spec]: ValueOf<Spec[Field]> | undefined };

const ACCOUNT_MAX_LENGTH = 128;
const CODE_MAX_LENGTH = 32;
// The base64 of the longest password a face may set: 3 UTF-8 bytes at most per UTF-16 unit, and
// 4 base64 characters per 3 bytes (routes.ts `decodePassword` then counts the password itself).
const PASSWORD_MAX_LENGTH = 4 * MAX_PASSWORD_CHARACTERS;
const TOKEN_MAX_LENGTH = 512;
const USERNAME_MAX_LENGTH = 64;

/** `CommonSendVerifyCodeDTO` */
export const SendVerifyCodeBody = {
  type: { type: "string", required: true, in: ["email", "sms"], description: "email or sms" },
  useType: {
    type: "integer",
    required: true,
    in: [1, 2, 3, 4, 5],
    description:
      "1 new account (must not exist), 2 existing account (must exist), 3 logged in and this contact blank, 4 the logged-in account's own contact, 5 no account rule",
  },
  templateId: {
    type: "integer",
    required: true,
    between: [1, 8],
    description:
      "1 general, 2 register, 3 change contact, 4 bind contact, 5 reset password, 6 reset payment password, 7 login, 8 delete account",
  },
  account: {
    type: "scalar",
    required: { if: { field: "useType", values: [1, 2, 3, 5] } },
    maxLength: ACCOUNT_MAX_LENGTH,
    description: "email, or phone number without the country code; not used with useType 4",
  },
  countryCode: {
    type: "integer",
    description: "country calling code of a phone number (86, 1, ...)",
  },
} as const satisfies BodySpec;

/** The account an account endpoint is about: its DTOs open with these three fields, in this order. */
const ACCOUNT_FIELDS = {
  type: { type: "string", required: true, in: ["email", "phone"], description: "email or phone" },
  account: {
    type: "scalar",
    required: true,
    maxLength: ACCOUNT_MAX_LENGTH,
    description: "email or phone number",
  },
  countryCode: {
    type: "integer",
    required: { if: { field: "type", values: ["phone"] } },
    description: "country calling code (phone)",
  },
} as const satisfies BodySpec;

/** `AccountRegisterDTO` */
export const RegisterBody = {
  ...ACCOUNT_FIELDS,
  verifyCode: {
    type: "string",
    required: true,
    maxLength: CODE_MAX_LENGTH,
    description: "code sent with useType 1, templateId 2",
  },
  password: {
    type: "string",
    required: true,
    maxLength: PASSWORD_MAX_LENGTH,
    description: "base64 of the password",
  },
  nickname: { type: "string", required: true, maxLength: 64, description: "nickname" },
  deviceToken: { type: "string", maxLength: TOKEN_MAX_LENGTH, description: "iOS or Android device token" },
} as const satisfies BodySpec;

/** `AccountLoginDTO` */
export const LoginBody = {
  ...ACCOUNT_FIELDS,
  password: {
    type: "string",
    required: { without: ["verifyCode"] },
    maxLength: PASSWORD_MAX_LENGTH,
    description: "base64 of the password",
  },
  verifyCode: {
    type: "string",
    required: { without: ["password"] },
    maxLength: CODE_MAX_LENGTH,
    description: "code sent with useType 2, templateId 7",
  },
  deviceToken: { type: "string", maxLength: TOKEN_MAX_LENGTH, description: "iOS or Android device token" },
} as const satisfies BodySpec;

/** `AccountResetPasswordDTO` */
export const ResetPasswordBody = {
  ...ACCOUNT_FIELDS,
  verifyCode: {
    type: "string",
    required: true,
    maxLength: CODE_MAX_LENGTH,
    description: "code sent with useType 2, templateId 5",
  },
  newPassword: {
    type: "string",
    required: true,
    maxLength: PASSWORD_MAX_LENGTH,
    description: "base64 of the new password",
  },
} as const satisfies BodySpec;

/** `AccountVerifyIdentityDTO` */
export const VerifyIdentityBody = {
  type: { type: "string", required: true, in: ["email", "sms"], description: "email or sms" },
  verifyCode: {
    type: "string",
    required: true,
    maxLength: CODE_MAX_LENGTH,
    description: "code sent with useType 4; checked, not consumed",
  },
} as const satisfies BodySpec;

/** `codeType` of the DTOs that take a code sent to the account's own contact. */
const CODE_TYPE = {
  type: "string",
  required: { with: ["verifyCode"] },
  in: ["email", "sms"],
  description: "channel of verifyCode",
} as const;

/** `AccountEditDTO` */
export const EditBody = {
  codeType: CODE_TYPE,
  verifyCode: {
    type: "string",
    maxLength: CODE_MAX_LENGTH,
    description: "code sent to the account's own contact (useType 4; templateId 4, or 5 for the password)",
  },
  newEmail: {
    type: "string",
    email: true,
    maxLength: ACCOUNT_MAX_LENGTH,
    description: "new email (code: newVerifyCode)",
  },
  newPhone: {
    type: "scalar",
    maxLength: ACCOUNT_MAX_LENGTH,
    description: "new phone number without the country code (code: newVerifyCode)",
  },
  newCountryCode: {
    type: "integer",
    required: { with: ["newPhone"] },
    description: "country calling code of newPhone",
  },
  newVerifyCode: {
    type: "string",
    required: { with: ["newEmail", "newPhone"] },
    maxLength: CODE_MAX_LENGTH,
    description: "code sent to the new contact (templateId 3 to change one, 4 to set the first)",
  },
  currentPassword: { type: "string", maxLength: PASSWORD_MAX_LENGTH, description: "base64" },
  newPassword: { type: "string", maxLength: PASSWORD_MAX_LENGTH, description: "base64" },
  currentWalletPassword: { type: "string", maxLength: PASSWORD_MAX_LENGTH, description: "base64" },
  newWalletPassword: { type: "string", maxLength: PASSWORD_MAX_LENGTH, description: "base64" },
  updateLastLoginTime: { type: "boolean", description: "accepted; no effect" },
  disconnectPlatformId: { type: "integer", description: "accepted; no effect (no connected accounts)" },
  deviceToken: { type: "string", maxLength: TOKEN_MAX_LENGTH, description: "iOS or Android device token" },
} as const satisfies BodySpec;

/**
 * `AccountApplyDeleteDTO`: a password or a code proves the request. Neither is Fresns's controller
 * refusal 34111 ("Account password or verification code cannot be empty"), not a DTO rule.
 */
export const ApplyDeleteBody = {
  password: { type: "string", maxLength: PASSWORD_MAX_LENGTH, description: "base64 of the password" },
  codeType: CODE_TYPE,
  verifyCode: {
    type: "string",
    maxLength: CODE_MAX_LENGTH,
    description: "code sent to the account's own contact (useType 4, templateId 8)",
  },
} as const satisfies BodySpec;

/**
 * `UserAuthDTO`. Fresns declares `uidOrUsername` a string; its own clients post the uid from
 * account detail as it came, a number, so a number is read as its digits.
 */
export const UserAuthBody = {
  uidOrUsername: {
    type: "scalar",
    required: true,
    maxLength: USERNAME_MAX_LENGTH,
    description: "uid or username of the account's user (account detail's users[0])",
  },
  password: {
    type: "string",
    maxLength: PASSWORD_MAX_LENGTH,
    description: "base64 of the user's password; accepted, not needed (the user has none)",
  },
  deviceToken: { type: "string", maxLength: TOKEN_MAX_LENGTH, description: "iOS or Android device token" },
} as const satisfies BodySpec;

// --- Laravel-style messages ------------------------------------------------------------------------

type MessageKey =
  | "required"
  | "required_if"
  | "required_with"
  | "required_without"
  | "string"
  | "integer"
  | "boolean"
  | "in"
  | "between"
  | "email"
  | "max"
  | "digits"
  | "digits_between"
  | "json";

// en: Laravel's own validation.php; zh-Hans / zh-Hant: the laravel-lang translations' wording.
const MESSAGES: Record<FresnsLang, Record<MessageKey, string>> = {
  en: {
    required: "The {attribute} field is required.",
    required_if: "The {attribute} field is required when {other} is {value}.",
    required_with: "The {attribute} field is required when {values} is present.",
    required_without: "The {attribute} field is required when {values} is not present.",
    string: "The {attribute} must be a string.",
    integer: "The {attribute} must be an integer.",
    boolean: "The {attribute} field must be true or false.",
    in: "The selected {attribute} is invalid.",
    between: "The {attribute} must be between {min} and {max}.",
    email: "The {attribute} must be a valid email address.",
    max: "The {attribute} must not be greater than {max} characters.",
    digits: "The {attribute} must be a number made of digits.",
    digits_between: "The {attribute} must be between {min} and {max} digits.",
    json: "The request body must be a JSON object.",
  },
  "zh-Hans": {
    required: "{attribute} 不能为空。",
    required_if: "当 {other} 为 {value} 时 {attribute} 不能为空。",
    required_with: "当 {values} 存在时 {attribute} 不能为空。",
    required_without: "当 {values} 不存在时 {attribute} 不能为空。",
    string: "{attribute} 必须是一个字符串。",
    integer: "{attribute} 必须是整数。",
    boolean: "{attribute} 必须为布尔值。",
    in: "所选的 {attribute} 无效。",
    between: "{attribute} 必须介于 {min} - {max} 之间。",
    email: "{attribute} 不是一个合法的邮箱。",
    max: "{attribute} 不能大于 {max} 个字符。",
    digits: "{attribute} 必须是数字。",
    digits_between: "{attribute} 必须介于 {min} 和 {max} 位数字之间。",
    json: "请求体必须是 JSON 对象。",
  },
  "zh-Hant": {
    required: "{attribute} 不能留空。",
    required_if: "當 {other} 是 {value} 時 {attribute} 不能留空。",
    required_with: "當 {values} 出現時 {attribute} 不能留空。",
    required_without: "當 {values} 不存在時 {attribute} 不能留空。",
    string: "{attribute} 必須是一個字串。",
    integer: "{attribute} 必須是整數。",
    boolean: "{attribute} 必須是布林值。",
    in: "所選的 {attribute} 無效。",
    between: "{attribute} 必須介於 {min} 至 {max} 之間。",
    email: "{attribute} 必須是有效的電子郵件地址。",
    max: "{attribute} 不可以多於 {max} 個字元。",
    digits: "{attribute} 必須是數字。",
    digits_between: "{attribute} 必須介於 {min} 至 {max} 位數字之間。",
    json: "請求內容必須是 JSON 物件。",
  },
};

/** Laravel names an attribute by its snake case with spaces ("use type"); Chinese keeps the field name. */
function attributeName(field: string, lang: FresnsLang): string {
  if (lang !== "en" || field.startsWith("X-")) return field;
  return field.replace(/([a-z0-9])([A-Z])/g, "$1 $2").toLowerCase();
}

/** A Laravel validator sentence about `field`, in the caller's language. */
export function validationMessage(
  lang: FresnsLang,
  key: MessageKey,
  field: string,
  values: Record<string, string | number> = {},
): string {
  const names: Record<string, string> = { attribute: attributeName(field, lang) };
  for (const [name, value] of Object.entries(values)) {
    names[name] = name === "other" || name === "values" ? attributeName(String(value), lang) : String(value);
  }
  return MESSAGES[lang][key].replace(/\{(\w+)\}/g, (whole, name: string) => names[name] ?? whole);
}

/** A 30000 refusal naming `field` in Laravel's wording. */
export function invalidInput(
  lang: FresnsLang,
  key: MessageKey,
  field: string,
  values?: Record<string, string | number>,
): FresnsRefusal {
  return new FresnsRefusal(30000, validationMessage(lang, key, field, values));
}

// --- the validator ---------------------------------------------------------------------------------

/**
 * Fresns runs Laravel's global TrimStrings middleware before any DTO sees a body, so a code or
 * address pasted with a space or line break around it is read without it. Laravel trims every
 * string input but the names in its `$except` list; of Fresns's (`current_password`, `password`,
 * `password_confirmation`) only `password` names a field here. Its surrounding whitespace is
 * still ignored: PHP's strict `base64_decode` skips whitespace, as `decodePassword` does.
 */
const UNTRIMMED_FIELDS = new Set(["password"]);

/**
 * Laravel's trim: Unicode whitespace, the byte-order mark and the zero-width space at either end.
 * A scan in from each end, not a regular expression: `/[\s]+$/` is tried at every position of a
 * run, so a 16 KiB run of spaces cost a second and more.
 */
export function trimmed(value: string): string {
  let start = 0;
  let end = value.length;
  while (start < end && TRIMMED_CHAR.test(value[start] as string)) start++;
  while (end > start && TRIMMED_CHAR.test(value[end - 1] as string)) end--;
  return start === 0 && end === value.length ? value : value.slice(start, end);
}
const TRIMMED_CHAR = /^[\s\u200B]$/;

/** Laravel's ConvertEmptyStringsToNull: absent, null and blank strings are all "not given". */
function given(value: unknown): boolean {
  return !(value === undefined || value === null || (typeof value === "string" && trimmed(value) === ""));
}

const INTEGER_PATTERN = /^[+-]?(0|[1-9]\d{0,15})$/;
// One @, no spaces, a dotted domain: the shape Laravel's `email` rule accepts; the core's recipient
// parser decides deliverability afterwards (34101 when it refuses).
const EMAIL_PATTERN = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;

/**
 * Validates a body against its rule table the way Laravel would, throwing the first failure as a
 * 30000 that names the field. A body that is not an object reads as empty, as Laravel reads it.
 */
export function validateBody<Spec extends BodySpec>(
  spec: Spec,
  input: unknown,
  lang: FresnsLang,
): Body<Spec> {
  const source: Record<string, unknown> =
    typeof input === "object" && input !== null && !Array.isArray(input)
      ? (input as Record<string, unknown>)
      : {};
  // Every rule, `required_if`'s look at another field included, reads the body as TrimStrings left it.
  const read = (field: string): unknown => {
    if (!Object.hasOwn(source, field)) return undefined;
    const value = source[field];
    return typeof value === "string" && !UNTRIMMED_FIELDS.has(field) ? trimmed(value) : value;
  };
  const output: Record<string, string | number | boolean | undefined> = {};
  for (const [field, rules] of Object.entries(spec)) {
    const raw = read(field);
    if (!given(raw)) {
      const missing = requirementFailure(rules.required, read);
      if (missing) throw invalidInput(lang, missing.key, field, missing.values);
      output[field] = undefined;
      continue;
    }
    output[field] = checkField(field, rules, raw, lang);
  }
  return output as Body<Spec>;
}

function requirementFailure(
  requirement: Requirement | undefined,
  read: (field: string) => unknown,
): { key: MessageKey; values?: Record<string, string | number> } | null {
  if (requirement === undefined) return null;
  if (requirement === true) return { key: "required" };
  if ("if" in requirement) {
    const other = read(requirement.if.field);
    const matches = given(other) && requirement.if.values.some((value) => String(value) === String(other));
    return matches
      ? { key: "required_if", values: { other: requirement.if.field, value: String(other) } }
      : null;
  }
  if ("with" in requirement) {
    const present = requirement.with.filter((field) => given(read(field)));
    return present.length > 0 ? { key: "required_with", values: { values: present.join(" / ") } } : null;
  }
  const absent = requirement.without.every((field) => !given(read(field)));
  return absent ? { key: "required_without", values: { values: requirement.without.join(" / ") } } : null;
}

function checkField(
  field: string,
  rules: FieldSpec,
  raw: unknown,
  lang: FresnsLang,
): string | number | boolean {
  const value = typed(rules.type, raw);
  if (value === null) throw invalidInput(lang, rules.type === "scalar" ? "string" : rules.type, field);
  if (rules.in && !rules.in.some((allowed) => String(allowed) === String(value))) {
    throw invalidInput(lang, "in", field);
  }
  if (rules.between && typeof value === "number") {
    const [min, max] = rules.between;
    if (value < min || value > max) throw invalidInput(lang, "between", field, { min, max });
  }
  if (typeof value === "string") {
    if (rules.maxLength !== undefined && value.length > rules.maxLength) {
      throw invalidInput(lang, "max", field, { max: rules.maxLength });
    }
    if (rules.email && !EMAIL_PATTERN.test(value)) throw invalidInput(lang, "email", field);
  }
  return value;
}

/** A text as Laravel's `integer` rule reads it (a numeric string), or null when it is none. */
export function integerOf(text: string): number | null {
  const value = text.trim();
  return INTEGER_PATTERN.test(value) ? Number(value) : null;
}

/** The value in its rule's type, or null when it is not of that type. */
function typed(type: FieldType, raw: unknown): string | number | boolean | null {
  switch (type) {
    case "string":
      return typeof raw === "string" ? raw : null;
    case "scalar":
      if (typeof raw === "string") return raw.trim();
      return typeof raw === "number" && Number.isSafeInteger(raw) && raw >= 0 ? String(raw) : null;
    case "integer":
      if (typeof raw === "number") return Number.isSafeInteger(raw) ? raw : null;
      return typeof raw === "string" ? integerOf(raw) : null;
    case "boolean":
      if (raw === true || raw === 1 || raw === "1" || raw === "true") return true;
      if (raw === false || raw === 0 || raw === "0" || raw === "false") return false;
      return null;
  }
}

// --- JSON Schema for /docs --------------------------------------------------------------------------

/**
 * The JSON Schema of a body, generated from its rule table for the OpenAPI document. It documents
 * the wire; `validateBody` enforces it (with Laravel's order and messages).
 */
export function documentBody(spec: BodySpec): TSchema {
  const properties: Record<string, TSchema> = {};
  for (const [field, rules] of Object.entries(spec)) {
    let schema: TSchema;
    const options = { description: rules.description };
    if (rules.in) schema = Type.Enum([...rules.in], options);
    else if (rules.type === "integer")
      schema = Type.Integer({
        ...options,
        ...(rules.between ? { minimum: rules.between[0], maximum: rules.between[1] } : {}),
      });
    else if (rules.type === "boolean") schema = Type.Boolean(options);
    else if (rules.type === "scalar")
      schema = Type.Union([Type.String({ maxLength: rules.maxLength }), Type.Integer()], options);
    else
      schema = Type.String({
        ...options,
        ...(rules.maxLength ? { maxLength: rules.maxLength } : {}),
        ...(rules.email ? { format: "email" } : {}),
      });
    properties[field] = rules.required === true ? schema : Type.Optional(schema);
  }
  return Type.Object(properties);
}

/** The headers a Fresns client sends (all optional here: DESIGN.md decisions). */
export const FresnsHeaders = Type.Object({
  "x-fresns-app-id": Type.Optional(
    Type.String({ description: "verifyd app client id (absent: the app `default`)" }),
  ),
  "x-fresns-client-lang-tag": Type.Optional(
    Type.String({ description: "en (default), zh-Hans or zh-Hant: language of messages and templates" }),
  ),
  "x-fresns-client-timezone": Type.Optional(
    Type.String({ description: "UTC offset such as +8, -5:30 or +5.5 (hours)" }),
  ),
  "x-fresns-aid": Type.Optional(Type.String({ description: "account id (aid)" })),
  "x-fresns-aid-token": Type.Optional(Type.String({ description: "session token of the aid" })),
  "x-fresns-uid": Type.Optional(Type.String({ description: "user id of the aid's user" })),
  "x-fresns-uid-token": Type.Optional(Type.String({ description: "session token of the uid" })),
  "x-fresns-signature": Type.Optional(
    Type.String({ description: "md5 request signature; required when the app has a Fresns secret" }),
  ),
  "x-fresns-signature-timestamp": Type.Optional(
    Type.String({ description: "Unix time of the signature, seconds (10 digits) or milliseconds (13)" }),
  ),
});

/**
 * Every Fresns answer, a refusal too: HTTP 200 with this envelope (`code` 0 and `message` "ok" on
 * success, a Fresns error code otherwise). `/docs` shows it for each route; replies are built by
 * hand (`ok` and the renderer), not serialized through it.
 */
export const FresnsReply = Type.Object({
  code: Type.Integer({ description: "0 on success, else a Fresns error code" }),
  message: Type.String(),
  data: Type.Unknown({ description: "the route's answer on success; null on a refusal" }),
});

/** The answer to a bug: HTTP 500 with the request id to quote. */
export const FresnsBugReply = Type.Object({
  code: Type.Literal(500),
  message: Type.Literal("Unknown Error"),
  data: Type.Object({
    requestId: Type.String({ description: "the request id, to quote when reporting it" }),
  }),
});
