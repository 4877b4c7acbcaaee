/** Domain vocabulary shared by every use case, port and API face. */

export const CHANNELS = ["email", "sms"] as const;
export type Channel = (typeof CHANNELS)[number];

/** What a code is for: it picks the template, and a code or token of one purpose never serves another. */
export const PURPOSES = [
  "sign_up",
  "sign_in",
  "reset_password",
  "reset_payment_password",
  "bind_contact",
  "change_contact",
  "change_password",
  "delete_account",
  "reverify",
  "generic",
] as const;
export type Purpose = (typeof PURPOSES)[number];

/** The precondition on the recipient, independent of the purpose. */
export const ACCOUNT_RULES = [
  "any",
  "must_exist",
  "must_not_exist",
  "logged_in_contact_blank",
  "own_contact",
] as const;
export type AccountRule = (typeof ACCOUNT_RULES)[number];

export const VERIFICATION_STATUSES = [
  "pending",
  "approved",
  "canceled",
  "expired",
  "max_attempts_reached",
  "superseded",
] as const;
export type VerificationStatus = (typeof VERIFICATION_STATUSES)[number];

/** The statuses a store keeps; `expired` and `max_attempts_reached` are derived from time and attempts. */
export type StoredStatus = "pending" | "approved" | "canceled" | "superseded";

/**
 * What kind of line a phone number is, as libphonenumber's metadata classifies it (its
 * `NumberType`); the SMS-pumping guard refuses some kinds.
 */
export const PHONE_NUMBER_TYPES = [
  "FIXED_LINE",
  "MOBILE",
  "FIXED_LINE_OR_MOBILE",
  "TOLL_FREE",
  "PREMIUM_RATE",
  "SHARED_COST",
  "VOIP",
  "PERSONAL_NUMBER",
  "PAGER",
  "UAN",
  "VOICEMAIL",
] as const;
export type PhoneNumberType = (typeof PHONE_NUMBER_TYPES)[number];

/** A normalised address: lower-cased email domain, or E.164 phone number. */
export interface Recipient {
  channel: Channel;
  address: string;
  /** ISO 3166 alpha-2 region of a phone number; absent for email */
  country?: string;
  /** the phone number's country calling code ("86"); absent for email */
  callingCode?: string;
  /** the phone number's kind of line; absent for email and where the metadata cannot tell */
  numberType?: PhoneNumberType;
}

/** One "at most `limit` per `windowSeconds`" rule. */
export interface RateRule {
  limit: number;
  windowSeconds: number;
}

/** Per-app policy; every value has a default in `policy.ts`. */
export interface Policy {
  codeLength: number;
  codeTtlSeconds: number;
  maxAttempts: number;
  tokenTtlSeconds: number;
  perRecipient: RateRule[];
  perIp: RateRule[];
  /** whole-app send budget; none by default */
  perApp: RateRule[];
  failedChecksPerRecipient: RateRule;
}

export interface MessageTemplate {
  /** email subject; unused for SMS */
  subject: string;
  /** body with `{code}`, `{minutes}` and `{app}` placeholders */
  text: string;
}

/** templates[purpose][locale] = template; missing entries fall back to the built-in ones. */
export type TemplateSet = Partial<Record<Purpose | "default", Record<string, MessageTemplate>>>;

export interface TestRecipient {
  /** email or phone number as configured; normalised when matched */
  to: string;
  code: string;
}

/** The API faces verifyd speaks; captcha policy is per (app, face). */
export const FACES = ["native", "fresns", "cloudbase", "idaas"] as const;
export type Face = (typeof FACES)[number];

/** never: no captcha; risk: required once risk rules trip; always: every send needs a pass token. */
export type CaptchaMode = "never" | "risk" | "always";

/** The risk rules that escalate to a captcha (sends in a window per client IP, subnet, site, device). */
export interface RiskRules {
  /** an IPv4 address, an IPv6 /64 */
  perIp: RateRule;
  /** /24 for IPv4, /56 for IPv6 */
  perSubnet: RateRule;
  /** an IPv6 /48, a site's allocation (IPv4 has none: a /16 holds unrelated clients) */
  perSite: RateRule;
  perDevice: RateRule;
}

/** The SMS-pumping guard (DESIGN.md: SMS budgets come with the abuse defence). */
export interface PumpingPolicy {
  /**
   * ISO 3166 alpha-2 regions SMS may go to; "*" allows every region with a country that is not
   * denied; "001" (libphonenumber's region of the non-geographic numbers: +870, +881, +882, +883,
   * ...) must be listed by name, "*" does not take it
   */
  allowCountries: string[];
  denyCountries: string[];
  /**
   * Kinds of number SMS never goes to, wherever they are: non-geographic lines that may share
   * the revenue of a message with their owner (premium rate, shared cost, personal numbers, UAN),
   * the targets of SMS pumping, and lines where nobody reads a code (pagers, voicemail). A number
   * of unknown kind is not refused.
   */
  denyNumberTypes: PhoneNumberType[];
  perCountry: RateRule[];
  /** per number prefix: the country code plus `prefixDigits` national digits */
  perPrefix: RateRule[];
  prefixDigits: number;
  /** whole-app SMS per day; 0 = no global budget */
  dailyBudget: number;
  /** E.164 numbers or "+prefixes" exempt from the guard */
  safeList: string[];
  /** record what would have been blocked, block nothing */
  shadow: boolean;
  /** automatic prefix block on a send spike with collapsing verification */
  anomaly: {
    enabled: boolean;
    /**
     * sends in the last hour below this never trigger: the floor a prefix with no history must
     * reach (its usual rate counts as 1 an hour, so any busier hour is a spike)
     */
    minHourlySends: number;
    /** hourly sends must exceed this multiple of the prefix's usual hourly rate */
    spikeFactor: number;
    /** and fewer than this share of them verified */
    maxVerifiedRatio: number;
    blockSeconds: number;
  };
}

/** A third-party captcha widget whose tokens an app's clients may present instead of a pass token. */
export interface ExternalCaptchaConfig {
  provider: "turnstile" | "hcaptcha" | "recaptcha";
  secret: string;
  /** the vendor's siteverify URL by default */
  verifyUrl?: string;
  /** reCAPTCHA v3 */
  minScore?: number;
  expectedAction?: string;
  /** the hostnames of the pages the widget is on; a token solved elsewhere is refused */
  expectedHostnames?: string[];
  /** hCaptcha: the widget's sitekey (one secret serves every sitekey of an account) */
  sitekey?: string;
}

export interface AbusePolicy {
  captcha: Record<Face, CaptchaMode>;
  external?: ExternalCaptchaConfig;
  risk: RiskRules;
  pumping: PumpingPolicy;
}

/** A tenant: its own policy, templates, credentials and browser origins. */
export interface App {
  id: string;
  clientId: string;
  name: string;
  disabled: boolean;
  /** the faces that serve it; on any other the app does not exist (APP_NOT_FOUND) */
  faces: Face[];
  /** sha256 hex of each API key; the keys themselves are shown once and never stored */
  apiKeyHashes: string[];
  corsOrigins: string[];
  policy: Policy;
  abuse: AbusePolicy;
  templates: TemplateSet;
  defaultLocale: string;
  testRecipients: TestRecipient[];
  /** Fresns request-signing secret; signatures are demanded only when set */
  fresnsSecret?: string;
  /** Fresns `site_login_or_register`: useType 2 may target a new account */
  loginOrRegister: boolean;
  /** CloudBase `is_user` disclosure; an app may switch it off */
  revealAccountExistence: boolean;
  sms: SmsSettings;
}

/** How an app's SMS text ends. */
export interface SmsSettings {
  /** add a "do not share this code" line */
  warning: boolean;
  /** end with the WebOTP line `@domain #code`, so browsers on that domain offer to autofill the code */
  webOtpDomain?: string;
}

export interface CodeRecord {
  id: string;
  appId: string;
  channel: Channel;
  /** normalised recipient address */
  to: string;
  purpose: Purpose;
  /** purposes the approval token may be redeemed for */
  tokenPurposes: Purpose[];
  /** HMAC-SHA256 of the code under the newest secret at issue time (hex) */
  codeHash: string;
  status: StoredStatus;
  attempts: number;
  maxAttempts: number;
  createdAtMs: number;
  expiresAtMs: number;
  locale: string;
  accountId?: string;
}

export interface TokenRecord {
  /** sha256 hex of the token; the token itself is returned once */
  tokenHash: string;
  appId: string;
  verificationId: string;
  channel: Channel;
  to: string;
  purposes: Purpose[];
  expiresAtMs: number;
}

/**
 * `unconfirmed`: the provider had the whole message but never answered, so it may or may not have
 * gone out; not retried (a receipt may still settle it).
 */
export type DeliveryStatus = "queued" | "sent" | "delivered" | "failed" | "unconfirmed";

export interface DeliveryRecord {
  provider: string;
  status: DeliveryStatus;
  atMs: number;
  error?: string;
  providerMessageId?: string;
}

/** The message the outbox worker renders and hands to a sender. */
export interface OutboxMessage {
  id: string;
  appId: string;
  verificationId: string;
  channel: Channel;
  to: string;
  purpose: Purpose;
  locale: string;
  /** AES-256-GCM sealed code; erased once delivered */
  sealedCode: string;
  createdAtMs: number;
  /** a code past its validity is not sent */
  deliverBeforeMs: number;
  attempts: number;
  /**
   * The providers an earlier try of this message reached without an answer (its delivery records
   * say `unconfirmed`, or what a receipt made of that): the message may have gone out through each,
   * so none of them is tried again. Absent when there are none.
   */
  unconfirmedBy?: string[];
}

export interface Account {
  id: string;
  appId: string;
  email?: string;
  phone?: string;
  username?: string;
  passwordHash?: string;
  profile: Record<string, string>;
  createdAtMs: number;
  /** when the owner asked for the account to be deleted (Fresns apply-delete); absent when never, or withdrawn */
  deletionRequestedAtMs?: number;
  /**
   * Moves on with every new password. A session logs in only while it matches the account's, so
   * a new password ends the sessions opened before it, even one a login in flight opens after it.
   */
  credentialVersion: number;
}
