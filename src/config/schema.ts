import Type, { type Static } from "typebox";
import { CODE_LENGTH_MAX, CODE_LENGTH_MIN } from "../core/policy.js";
import { FACES, PHONE_NUMBER_TYPES, PURPOSES } from "../core/types.js";
import { DeliverySchema, ProviderEntrySchema, RoutingSchema } from "./provider-schema.js";
import { MULTI_LINE, SINGLE_LINE } from "./text-rules.js";

/** What a pattern of this schema means, for a refusal a person reads instead of the regex. */
export const PATTERN_MEANINGS: Readonly<Record<string, string>> = {
  [SINGLE_LINE]: "must not contain control characters (line breaks, tabs, NUL, ESC, …)",
  [MULTI_LINE]: "must not contain control characters other than line breaks and tabs",
};

const literals = <const Values extends string[]>(values: readonly [...Values], description: string) =>
  Type.Enum(values, { description });

const RateRuleSchema = Type.Object(
  {
    limit: Type.Integer({ minimum: 1, maximum: 1_000_000_000, description: "how many in the window" }),
    windowSeconds: Type.Integer({
      minimum: 1,
      maximum: 31 * 86_400,
      description: "window length in seconds",
    }),
  },
  { additionalProperties: false },
);

const TemplateSchema = Type.Object(
  {
    // May be empty: an SMS-only template has no use for one.
    subject: Type.String({
      maxLength: 500,
      pattern: SINGLE_LINE,
      description: "email subject; {code} {minutes} {app} are filled in",
    }),
    text: Type.String({
      minLength: 1,
      maxLength: 5000,
      pattern: MULTI_LINE,
      description: "message body with {code}, {minutes}, {app}",
    }),
  },
  { additionalProperties: false },
);

/** templates[purpose or "default"][locale] */
// A key outside the patterns (a misspelt purpose, a malformed locale) is refused, not ignored.
const TemplateSetSchema = Type.Record(
  Type.String({ pattern: `^(default|${PURPOSES.join("|")})$` }),
  Type.Record(Type.String({ pattern: "^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$" }), TemplateSchema, {
    additionalProperties: false,
  }),
  { additionalProperties: false, description: "per purpose (or `default`) and locale: {subject, text}" },
);

export const PolicySchema = Type.Object(
  {
    codeLength: Type.Optional(
      Type.Integer({
        minimum: CODE_LENGTH_MIN,
        maximum: CODE_LENGTH_MAX,
        description: "digits per code (default 6)",
      }),
    ),
    codeTtlSeconds: Type.Optional(
      Type.Integer({ minimum: 30, maximum: 86_400, description: "code validity in seconds (default 600)" }),
    ),
    maxAttempts: Type.Optional(
      Type.Integer({ minimum: 1, maximum: 20, description: "wrong checks that kill a code (default 5)" }),
    ),
    tokenTtlSeconds: Type.Optional(
      Type.Integer({
        minimum: 30,
        maximum: 86_400,
        description: "verification token validity (default 600)",
      }),
    ),
    perRecipient: Type.Optional(
      Type.Array(RateRuleSchema, {
        maxItems: 10,
        description: "sends per recipient (default 1/60s, 5/600s, 20/day)",
      }),
    ),
    perIp: Type.Optional(
      Type.Array(RateRuleSchema, { maxItems: 10, description: "sends per client IP (default 10/h)" }),
    ),
    perApp: Type.Optional(
      Type.Array(RateRuleSchema, { maxItems: 10, description: "sends per app (default none)" }),
    ),
    failedChecksPerRecipient: Type.Optional(RateRuleSchema),
  },
  { additionalProperties: false },
);

const CaptchaModeSchema = literals(
  ["never", "risk", "always"] as const,
  "never, risk (escalate by risk rules) or always",
);
// ISO 3166 alpha-2 regions, "*" (every one with a country) and libphonenumber's "001": the
// non-geographic numbers (+800, +870, +881, +882, +883, ...), which "*" leaves out.
const CountryListSchema = Type.Array(Type.String({ pattern: "^([A-Z]{2}|\\*|001)$" }), { maxItems: 300 });

export const AbuseSchema = Type.Object(
  {
    external: Type.Optional(
      Type.Object(
        {
          provider: literals(["turnstile", "hcaptcha", "recaptcha"] as const, "the widget's vendor"),
          secret: Type.String({
            minLength: 1,
            maxLength: 512,
            description: 'siteverify secret (use "${NAME}")',
          }),
          verifyUrl: Type.Optional(
            Type.String({ pattern: "^https?://", description: "siteverify URL (the vendor's by default)" }),
          ),
          minScore: Type.Optional(
            Type.Number({ minimum: 0, maximum: 1, description: "reCAPTCHA v3 minimum score" }),
          ),
          expectedAction: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
          expectedHostnames: Type.Optional(
            Type.Array(Type.String({ minLength: 1, maxLength: 253 }), {
              minItems: 1,
              maxItems: 100,
              description: "hostnames of the pages the widget is on; a token solved elsewhere is refused",
            }),
          ),
          sitekey: Type.Optional(
            Type.String({
              minLength: 1,
              maxLength: 100,
              description: "hCaptcha only: the widget's sitekey, so a token of another sitekey is refused",
            }),
          ),
        },
        {
          additionalProperties: false,
          description: "a third-party captcha whose widget tokens are accepted as X-Captcha-Token",
        },
      ),
    ),
    captcha: Type.Optional(
      Type.Object(
        {
          native: Type.Optional(CaptchaModeSchema),
          fresns: Type.Optional(CaptchaModeSchema),
          cloudbase: Type.Optional(CaptchaModeSchema),
          idaas: Type.Optional(CaptchaModeSchema),
        },
        {
          additionalProperties: false,
          description: "captcha mode per API face (default risk; IDaaS always; Fresns never)",
        },
      ),
    ),
    risk: Type.Optional(
      Type.Object(
        {
          perIp: Type.Optional(RateRuleSchema),
          perSubnet: Type.Optional(RateRuleSchema),
          perSite: Type.Optional(RateRuleSchema),
          perDevice: Type.Optional(RateRuleSchema),
        },
        {
          additionalProperties: false,
          description:
            "sends before a captcha is required (default 3 per IP or IPv6 /64, 10 per subnet (IPv4 /24, IPv6 /56), 30 per IPv6 site (/48), 3 per device in 600 s)",
        },
      ),
    ),
    pumping: Type.Optional(
      Type.Object(
        {
          allowCountries: Type.Optional({
            ...CountryListSchema,
            description:
              'the regions SMS may go to, "*" for every one with a country, "001" for the non-geographic numbers (+870, +881, +882, +883...), which "*" leaves out (default CN, HK, MO, TW, SG, JP, KR, US, CA, GB, DE, FR, AU, NZ)',
          }),
          denyCountries: Type.Optional(CountryListSchema),
          denyNumberTypes: Type.Optional(
            Type.Array(literals(PHONE_NUMBER_TYPES, "a kind of number, as libphonenumber names it"), {
              maxItems: PHONE_NUMBER_TYPES.length,
              uniqueItems: true,
              description:
                "kinds of number SMS is never sent to (default PREMIUM_RATE, SHARED_COST, PERSONAL_NUMBER, PAGER, UAN, VOICEMAIL); a number of unknown kind is never refused",
            }),
          ),
          perCountry: Type.Optional(Type.Array(RateRuleSchema, { maxItems: 10 })),
          perPrefix: Type.Optional(Type.Array(RateRuleSchema, { maxItems: 10 })),
          prefixDigits: Type.Optional(Type.Integer({ minimum: 0, maximum: 8 })),
          dailyBudget: Type.Optional(
            Type.Integer({ minimum: 0, description: "SMS per app per day; 0 = none" }),
          ),
          safeList: Type.Optional(
            Type.Array(Type.String({ pattern: "^\\+\\d{1,15}$" }), { maxItems: 10_000 }),
          ),
          shadow: Type.Optional(Type.Boolean({ description: "record what would be blocked, block nothing" })),
          anomaly: Type.Optional(
            Type.Object(
              {
                enabled: Type.Optional(Type.Boolean()),
                minHourlySends: Type.Optional(
                  Type.Integer({
                    minimum: 1,
                    description:
                      "sends to a prefix in the last hour before a spike there may block it (default 50, a prefix's hourly budget)",
                  }),
                ),
                spikeFactor: Type.Optional(Type.Number({ minimum: 1 })),
                maxVerifiedRatio: Type.Optional(Type.Number({ minimum: 0, maximum: 1 })),
                blockSeconds: Type.Optional(Type.Integer({ minimum: 60, maximum: 30 * 86_400 })),
              },
              { additionalProperties: false },
            ),
          ),
        },
        { additionalProperties: false, description: "SMS-pumping guard" },
      ),
    ),
  },
  { additionalProperties: false },
);

export const AppConfigSchema = Type.Object(
  {
    id: Type.String({
      pattern: "^[a-z0-9][a-z0-9_-]{0,62}$",
      description: "app id (lower case, digits, - and _)",
    }),
    clientId: Type.Optional(
      // (its longest is checked with app-issues.ts, as a request's client id is)
      Type.String({ minLength: 1, description: "public client id, at most 128 characters (default: id)" }),
    ),
    name: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 100,
        pattern: SINGLE_LINE,
        description: "shown in messages as {app}",
      }),
    ),
    disabled: Type.Optional(Type.Boolean()),
    faces: Type.Optional(
      Type.Array(literals(FACES, "an API face"), {
        minItems: 1,
        uniqueItems: true,
        description:
          "the API faces that serve the app (default all four); list only those its clients use, so a face with a weaker captcha policy is no way round another's",
      }),
    ),
    apiKeys: Type.Optional(
      Type.Array(Type.String({ minLength: 16, maxLength: 256 }), {
        description:
          'API keys accepted for this app (use "${NAME}" to read them from the environment); stored hashed',
      }),
    ),
    corsOrigins: Type.Optional(
      Type.Array(Type.String({ maxLength: 300 }), {
        description:
          "browser origins allowed, each as a browser sends it: scheme://host[:port], e.g. https://shop.example",
      }),
    ),
    policy: Type.Optional(PolicySchema),
    abuse: Type.Optional(AbuseSchema),
    templates: Type.Optional(TemplateSetSchema),
    defaultLocale: Type.Optional(Type.String({ maxLength: 35 })),
    testRecipients: Type.Optional(
      Type.Array(
        Type.Object(
          {
            to: Type.String({ minLength: 3, maxLength: 254 }),
            code: Type.String({ pattern: "^[0-9]{4,10}$" }),
          },
          { additionalProperties: false },
        ),
        { description: "recipients with a fixed code, never delivered (app review, e2e tests)" },
      ),
    ),
    fresnsSecret: Type.Optional(
      Type.String({ minLength: 1, maxLength: 256, description: "Fresns signing secret" }),
    ),
    loginOrRegister: Type.Optional(
      Type.Boolean({ description: "a code login may create the account (Fresns useType 2, IDaaS LOGIN_*)" }),
    ),
    revealAccountExistence: Type.Optional(
      Type.Boolean({ description: "CloudBase is_user disclosure (default true)" }),
    ),
    sms: Type.Optional(
      Type.Object(
        {
          warning: Type.Optional(
            Type.Boolean({ description: 'add a "do not share this code" line to SMS (default false)' }),
          ),
          webOtpDomain: Type.Optional(
            Type.String({
              pattern: "^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]{2,63}$",
              description:
                "end SMS with the WebOTP line `@domain #code` so browsers on this domain autofill it",
            }),
          ),
        },
        { additionalProperties: false, description: "SMS text options" },
      ),
    ),
  },
  { additionalProperties: false },
);

export const ConfigSchema = Type.Object(
  {
    mode: Type.Optional(literals(["dev", "production"] as const, "dev or production (default dev)")),
    host: Type.Optional(
      Type.String({
        minLength: 1,
        pattern: "^\\S+$",
        description: "listen address (default 127.0.0.1): a host name or IP address, no spaces",
      }),
    ),
    port: Type.Optional(
      Type.Integer({ minimum: 0, maximum: 65_535, description: "listen port (default 8080)" }),
    ),
    dataDir: Type.Optional(
      Type.String({ minLength: 1, description: "embedded database and dev secret (default ./data)" }),
    ),
    secret: Type.Optional(
      Type.Array(Type.String({ minLength: 16 }), {
        minItems: 1,
        description:
          "HMAC secrets, newest first; required in production (each at least 16 characters); the file also takes one comma-separated string",
      }),
    ),
    trustProxy: Type.Optional(
      Type.Array(Type.String({ minLength: 1 }), {
        description:
          "proxies whose X-Forwarded-For is believed: addresses, CIDRs, loopback, linklocal, uniquelocal; the file also takes one comma-separated string",
      }),
    ),
    redisUrl: Type.Optional(Type.String({ pattern: "^rediss?://", description: "cluster mode: Redis URL" })),
    databaseUrl: Type.Optional(
      Type.String({ pattern: "^postgres(ql)?://", description: "cluster mode: PostgreSQL URL" }),
    ),
    smtpUrl: Type.Optional(
      Type.String({
        pattern: "^smtps?://",
        description: "smtp://user:pass@host:port or smtps://, user and pass percent-encoded",
      }),
    ),
    emailFrom: Type.Optional(
      Type.String({
        minLength: 3,
        description: "From of emails: codes@example.com or Name <codes@example.com>",
      }),
    ),
    defaultCountry: Type.Optional(
      Type.String({ pattern: "^[A-Z]{2}$", description: "region of national numbers (default CN)" }),
    ),
    logLevel: Type.Optional(
      literals(
        ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const,
        "pino level (default info)",
      ),
    ),
    databasePoolSize: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: 1000,
        description: "cluster mode: PostgreSQL connections per process (default 10)",
      }),
    ),
    databaseSchema: Type.Optional(
      Type.String({
        pattern: "^[a-z_][a-z0-9_]{0,62}$",
        description:
          "cluster mode: PostgreSQL schema to use, created by migrations (default: the search_path)",
      }),
    ),
    redisPrefix: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 64,
        pattern: "^[^{}]*$",
        description:
          "cluster mode: prefix of every Redis key, so deployments can share a Redis (default vd:)",
      }),
    ),
    migrateOnStart: Type.Optional(
      Type.Boolean({
        description:
          "cluster mode: apply PostgreSQL migrations at startup (default true; else run `verifyd migrate`)",
      }),
    ),
    sqliteSynchronous: Type.Optional(
      literals(["NORMAL", "FULL"] as const, "NORMAL survives a crash; FULL also power loss (default NORMAL)"),
    ),
    apps: Type.Optional(Type.Array(AppConfigSchema, { description: "apps created or updated at startup" })),
    templates: Type.Optional(TemplateSetSchema),
    disposableEmailDomains: Type.Optional(
      Type.Array(Type.String({ minLength: 3, maxLength: 253 }), {
        maxItems: 100_000,
        description: "email domains refused as disposable (Fresns answers 34110)",
      }),
    ),
    providers: Type.Optional(
      Type.Array(ProviderEntrySchema, {
        maxItems: 100,
        description:
          'delivery providers (smtp, twilio, tencent, alibaba, webhook, smpp); secrets as "${NAME}"',
      }),
    ),
    routing: Type.Optional(RoutingSchema),
    delivery: Type.Optional(DeliverySchema),
    metricsToken: Type.Optional(
      Type.String({
        minLength: 16,
        description:
          "Bearer token of GET /metrics (at least 16 characters); production serves /metrics only with it, dev mode asks for it once set",
      }),
    ),
  },
  { additionalProperties: false },
);

export type ConfigInput = Static<typeof ConfigSchema>;
export type AppConfig = Static<typeof AppConfigSchema>;

/** Every environment variable and the config key it sets (the file uses the same names in camelCase). */
export const ENVIRONMENT_KEYS = {
  VERIFYD_MODE: "mode",
  VERIFYD_HOST: "host",
  VERIFYD_PORT: "port",
  VERIFYD_DATA_DIR: "dataDir",
  VERIFYD_SECRET: "secret",
  VERIFYD_TRUST_PROXY: "trustProxy",
  VERIFYD_REDIS_URL: "redisUrl",
  VERIFYD_DATABASE_URL: "databaseUrl",
  VERIFYD_SMTP_URL: "smtpUrl",
  VERIFYD_EMAIL_FROM: "emailFrom",
  VERIFYD_DEFAULT_COUNTRY: "defaultCountry",
  VERIFYD_LOG_LEVEL: "logLevel",
  VERIFYD_SQLITE_SYNCHRONOUS: "sqliteSynchronous",
  VERIFYD_DATABASE_POOL_SIZE: "databasePoolSize",
  VERIFYD_DATABASE_SCHEMA: "databaseSchema",
  VERIFYD_REDIS_PREFIX: "redisPrefix",
  VERIFYD_MIGRATE_ON_START: "migrateOnStart",
  VERIFYD_METRICS_TOKEN: "metricsToken",
} as const satisfies Record<string, keyof ConfigInput>;
