import Type, { type Static, type TSchema } from "typebox";
import { Value } from "typebox/value";
import { routeKeyChannel } from "../core/delivery/sender-router.js";
import { parseSmtpUrl } from "../delivery/email/smtp/smtp-url.js";
import { ProviderUrlError, parseHttpUrl, parseProviderUrl } from "../delivery/provider-url.js";
import { parseSmppUrl } from "../delivery/sms/smpp/smpp-url.js";
import { isLoopbackHost } from "./loopback-host.js";
import { EMAIL_FROM_SHAPE, isEmailFrom, isEmailList } from "./text-rules.js";

/**
 * The `providers`, `routing` and `delivery` sections of the config file. Each provider type has its
 * own schema; `ConfigSchema` only checks the shared `{id, type}` head, and `providerIssues` checks
 * the rest per type, because a union's errors would list every other type's mismatches too.
 */

export const PROVIDER_TYPES = ["smtp", "twilio", "tencent", "alibaba", "webhook", "smpp"] as const;
export type ProviderType = (typeof PROVIDER_TYPES)[number];

// Provider ids appear in delivery records and in callback URLs (`/v1/callbacks/{id}`).
const PROVIDER_ID_PATTERN = "^[a-z0-9][a-z0-9_-]{0,62}$";
const ProviderId = Type.String({
  pattern: PROVIDER_ID_PATTERN,
  description:
    "provider id: lower case, digits, - and _; names it in routing, delivery records and callbacks",
});
const Secret = (description: string) => Type.String({ minLength: 1, maxLength: 1024, description });
// At most 18 s: a try waits 20 s for its provider (outbox-worker.ts), and the sender, which knows
// whether its request went out whole, must report before the worker gives up on it. A call timed
// out after its request was written is unconfirmed and never retried, so shorter is not safer.
const TimeoutMs = Type.Optional(
  Type.Integer({
    minimum: 100,
    maximum: 18_000,
    description:
      "per-request timeout in ms (default and at most 18000); a request the provider got whole but did not answer in time is recorded unconfirmed, not retried",
  }),
);
const BaseUrl = Type.Optional(
  Type.String({ pattern: "^https?://", description: "API base URL (tests point it at a loopback stub)" }),
);
const TemplateValueSchema = Type.Enum(["code", "minutes"], {
  description: "what fills a vendor template variable: the code or its validity in minutes",
});
const ValidityMinutes = Type.Optional(
  Type.Integer({
    minimum: 1,
    maximum: 1440,
    description: "minutes the template announces, fixed (default: the minutes the code has left)",
  }),
);

/** The head every provider entry shares; the rest is checked per type by `providerIssues`. */
export const ProviderEntrySchema = Type.Object(
  {
    id: ProviderId,
    type: Type.Enum([...PROVIDER_TYPES], { description: PROVIDER_TYPES.join(", ") }),
  },
  { description: "one delivery provider; the other keys depend on `type`" },
);

export const SmtpProviderSchema = Type.Object(
  {
    id: ProviderId,
    type: Type.Literal("smtp"),
    url: Type.String({
      pattern: "^smtps?://",
      description:
        "smtp://user:pass@host:port (STARTTLS when offered; ?requireTLS=true insists) or smtps://, user and pass percent-encoded",
    }),
    from: Type.String({
      minLength: 3,
      maxLength: 320,
      description: 'From header, e.g. "Acme" <no-reply@acme.example>',
    }),
    replyTo: Type.Optional(Type.String({ minLength: 3, maxLength: 320, description: "Reply-To header" })),
    pool: Type.Optional(Type.Boolean({ description: "reuse connections (default true)" })),
    tls: Type.Optional(
      Type.Object(
        {
          rejectUnauthorized: Type.Optional(
            Type.Boolean({ description: "verify the relay's certificate (default true)" }),
          ),
          ca: Type.Optional(Type.String({ description: "PEM of a private CA" })),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false, description: "email over SMTP (nodemailer, pooled)" },
);

export const TwilioProviderSchema = Type.Object(
  {
    id: ProviderId,
    type: Type.Literal("twilio"),
    accountSid: Type.String({ pattern: "^AC[0-9A-Za-z]{1,64}$", description: "account SID (AC…)" }),
    authToken: Type.Optional(
      Secret(
        "auth token: authenticates sends unless an API key is set, and always verifies status callbacks",
      ),
    ),
    apiKeySid: Type.Optional(
      Type.String({ pattern: "^SK[0-9A-Za-z]{1,64}$", description: "API key SID (SK…)" }),
    ),
    apiKeySecret: Type.Optional(Secret("API key secret")),
    from: Type.Optional(
      Type.String({ minLength: 1, maxLength: 64, description: "sender number or alphanumeric id" }),
    ),
    messagingServiceSid: Type.Optional(
      Type.String({
        pattern: "^MG[0-9A-Za-z]{1,64}$",
        description: "Messaging Service SID (MG…), instead of from",
      }),
    ),
    statusCallbackUrl: Type.Optional(
      Type.String({
        pattern: "^https?://",
        description: "public URL of POST /v1/callbacks/{id}; Twilio posts status changes there, signed",
      }),
    ),
    baseUrl: BaseUrl,
    timeoutMs: TimeoutMs,
  },
  { additionalProperties: false, description: "Twilio Messages API" },
);

export const TencentProviderSchema = Type.Object(
  {
    id: ProviderId,
    type: Type.Literal("tencent"),
    secretId: Secret("API SecretId"),
    secretKey: Secret("API SecretKey"),
    smsSdkAppId: Type.String({ pattern: "^\\d{1,20}$", description: "SMS SdkAppId, e.g. 1400006666" }),
    signName: Type.Optional(Type.String({ minLength: 1, maxLength: 64, description: "approved signature" })),
    templateId: Type.String({ pattern: "^\\d{1,20}$", description: "approved template id" }),
    templateParams: Type.Optional(
      Type.Array(TemplateValueSchema, {
        maxItems: 5,
        description: "fills {1}, {2}, … (default code, minutes)",
      }),
    ),
    validityMinutes: ValidityMinutes,
    region: Type.Optional(
      Type.String({ pattern: "^[a-z]+-[a-z]+$", description: "API region (default ap-guangzhou)" }),
    ),
    baseUrl: BaseUrl,
    timeoutMs: TimeoutMs,
  },
  { additionalProperties: false, description: "Tencent Cloud SMS SendSms (TC3-HMAC-SHA256)" },
);

export const AlibabaProviderSchema = Type.Object(
  {
    id: ProviderId,
    type: Type.Literal("alibaba"),
    accessKeyId: Secret("AccessKey id"),
    accessKeySecret: Secret("AccessKey secret"),
    signName: Type.String({ minLength: 1, maxLength: 64, description: "approved signature" }),
    templateCode: Type.String({
      pattern: "^SMS_\\d+$",
      description: "approved template, e.g. SMS_154950909",
    }),
    templateParams: Type.Optional(
      Type.Record(Type.String({ pattern: "^[A-Za-z0-9_]{1,64}$" }), TemplateValueSchema, {
        additionalProperties: false,
        description: "template variable -> code or minutes (default {code: code})",
      }),
    ),
    validityMinutes: ValidityMinutes,
    baseUrl: BaseUrl,
    timeoutMs: TimeoutMs,
  },
  { additionalProperties: false, description: "Alibaba Cloud Dysmsapi SendSms (RPC signature)" },
);

export const WebhookProviderSchema = Type.Object(
  {
    id: ProviderId,
    type: Type.Literal("webhook"),
    url: Type.String({ pattern: "^https?://", description: "where each message is POSTed as signed JSON" }),
    secret: Type.String({
      minLength: 16,
      maxLength: 1024,
      description: "HMAC-SHA256 key of X-Verifyd-Signature, both ways (sends and status callbacks)",
    }),
    channel: Type.Optional(Type.Enum(["email", "sms"], { description: "channel it delivers (default sms)" })),
    timeoutMs: TimeoutMs,
  },
  { additionalProperties: false, description: "generic HTTP webhook (your own gateway)" },
);

export const SmppProviderSchema = Type.Object(
  {
    id: ProviderId,
    type: Type.Literal("smpp"),
    url: Type.String({
      pattern: "^s?smpp://",
      description: "smpp://host:port, or ssmpp://host:port for TLS",
    }),
    systemId: Type.String({ minLength: 1, maxLength: 15, description: "bind system_id" }),
    password: Type.String({ maxLength: 8, description: "bind password (SMPP allows 8 characters)" }),
    systemType: Type.Optional(Type.String({ maxLength: 12 })),
    sourceAddr: Type.String({
      minLength: 1,
      maxLength: 20,
      description: "sender: alphanumeric, short code or +number",
    }),
    sourceAddrTon: Type.Optional(Type.Integer({ minimum: 0, maximum: 6 })),
    sourceAddrNpi: Type.Optional(Type.Integer({ minimum: 0, maximum: 18 })),
    longMessages: Type.Optional(
      Type.Enum(["udh", "payload"], {
        description: "long texts as UDH parts (default) or one message_payload",
      }),
    ),
    enquireLinkIntervalSeconds: Type.Optional(Type.Integer({ minimum: 5, maximum: 3600 })),
    reconnectDelayMs: Type.Optional(Type.Integer({ minimum: 10, maximum: 600_000 })),
    maxReconnectDelayMs: Type.Optional(Type.Integer({ minimum: 10, maximum: 600_000 })),
    responseTimeoutMs: Type.Optional(
      Type.Integer({
        minimum: 100,
        // Each answer is waited for within the send's 18 s, which must end inside the try (20 s).
        maximum: 10_000,
        description:
          "how long a bind or enquire_link waits for its response (default 10000), and a submit_sm when set (by default it waits for the rest of the send's 18 s; one unanswered is recorded unconfirmed, not retried)",
      }),
    ),
    submitWindow: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: 100,
        description:
          "submit_sm awaiting their response at once on the session (default 10); the SMSC's window, which operators set to 5-10",
      }),
    ),
  },
  {
    additionalProperties: false,
    description: "SMPP 3.4 transceiver (delivery receipts update delivery status)",
  },
);

export type SmtpProviderConfig = Static<typeof SmtpProviderSchema>;
export type TwilioProviderConfig = Static<typeof TwilioProviderSchema>;
export type TencentProviderConfig = Static<typeof TencentProviderSchema>;
export type AlibabaProviderConfig = Static<typeof AlibabaProviderSchema>;
export type WebhookProviderConfig = Static<typeof WebhookProviderSchema>;
export type SmppProviderConfig = Static<typeof SmppProviderSchema>;
export type ProviderConfig =
  | SmtpProviderConfig
  | TwilioProviderConfig
  | TencentProviderConfig
  | AlibabaProviderConfig
  | WebhookProviderConfig
  | SmppProviderConfig;

const SCHEMA_BY_TYPE: Record<ProviderType, TSchema> = {
  smtp: SmtpProviderSchema,
  twilio: TwilioProviderSchema,
  tencent: TencentProviderSchema,
  alibaba: AlibabaProviderSchema,
  webhook: WebhookProviderSchema,
  smpp: SmppProviderSchema,
};

/**
 * `routing` keys: `email`, `sms`, `sms:CN` (destination country), and the same under an app:
 * `acme/email`, `acme/sms:CN`. The most specific key wins.
 */
export const ROUTE_KEY_PATTERN = "^([a-z0-9][a-z0-9_-]{0,62}/)?(email|sms|sms:[A-Z]{2})$";

export const RoutingSchema = Type.Record(
  Type.String({ pattern: ROUTE_KEY_PATTERN }),
  Type.Array(Type.String({ pattern: PROVIDER_ID_PATTERN }), { minItems: 1, maxItems: 10, uniqueItems: true }),
  {
    additionalProperties: false,
    description:
      "ordered provider ids per `[app/]channel[:COUNTRY]` (e.g. sms, sms:CN, acme/email); a channel without an entry uses all its providers in declaration order",
  },
);

export const DeliverySchema = Type.Object(
  {
    triesPerProvider: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: 10,
        description: "tries of one provider (with backoff) before failing over to the next (default 2)",
      }),
    ),
    leaseSeconds: Type.Optional(
      Type.Integer({
        // A provider call may take 20 s (the senders bound themselves within it) and its outcome
        // must be recorded before the lease ends; a shorter lease made the worker give up on
        // calls still going out, and another claim send them again.
        minimum: 30,
        maximum: 600,
        description:
          "how long a claimed message stays invisible to other workers (default 30, the least that covers a 20 s provider call and recording its outcome)",
      }),
    ),
    breaker: Type.Optional(
      Type.Object(
        {
          failureThreshold: Type.Optional(
            Type.Integer({
              minimum: 1,
              maximum: 1000,
              description: "consecutive failures that open it (default 5)",
            }),
          ),
          coolDownSeconds: Type.Optional(
            Type.Integer({
              minimum: 1,
              maximum: 3600,
              description: "open time before one probe (default 30)",
            }),
          ),
        },
        { additionalProperties: false, description: "circuit breaker per provider" },
      ),
    ),
  },
  { additionalProperties: false, description: "outbox worker tuning" },
);

export type ProviderEntry = Static<typeof ProviderEntrySchema>;
export type RoutingConfig = Static<typeof RoutingSchema>;
export type DeliveryConfig = Static<typeof DeliverySchema>;

/** The channel a provider delivers. */
export function providerChannel(provider: ProviderConfig): "email" | "sms" {
  if (provider.type === "smtp") return "email";
  if (provider.type === "webhook") return provider.channel ?? "sms";
  return "sms";
}

/**
 * Checks each provider against its type's schema and the cross-references: unique ids, credentials
 * that go together, URLs its sender can use, routes naming declared providers of the right
 * channel. Returns one issue per problem, each naming its key (`providers/1/authToken`,
 * `routing/sms:CN/0`). `fromEnvironment` are providers the environment adds, checked by the
 * caller under their variables' names: routes may name them, and they replace a file entry of
 * their id, which is then not checked.
 */
export function providerIssues(
  providers: ProviderEntry[],
  routing: RoutingConfig,
  fromEnvironment: ProviderConfig[] = [],
): string[] {
  const issues: string[] = [];
  const byId = new Map<string, ProviderConfig>(fromEnvironment.map((provider) => [provider.id, provider]));
  const replaced = new Set(byId.keys());
  providers.forEach((entry, index) => {
    if (replaced.has(entry.id)) return;
    const at = `providers/${index}`;
    const schema = SCHEMA_BY_TYPE[entry.type as ProviderType];
    if (!schema) return; // the head schema already reported the unknown type
    const before = issues.length;
    for (const error of Value.Errors(schema, entry)) {
      if (error.keyword === "boolean") continue;
      const extra = (error.params as { additionalProperties?: string[] }).additionalProperties;
      const path = `${at}${error.instancePath}`;
      issues.push(
        `${path}: ${extra ? `unknown key(s) ${extra.join(", ")} for type ${entry.type}` : error.message}`,
      );
    }
    if (byId.has(entry.id)) issues.push(`${at}/id: provider "${entry.id}" is declared twice`);
    if (issues.length > before) return;
    const provider = entry as ProviderConfig;
    issues.push(...crossKeyIssues(provider, at), ...urlIssues(provider, at));
    byId.set(entry.id, provider);
  });
  for (const [key, ids] of Object.entries(routing)) {
    // undefined for a malformed key, which the schema's key pattern reports on its own
    const channel = routeKeyChannel(key);
    ids.forEach((id, index) => {
      const provider = byId.get(id);
      if (!provider) {
        const known = [...byId.keys()].join(", ") || "none";
        issues.push(`routing/${key}/${index}: unknown provider "${id}" (declared: ${known})`);
      } else if (channel !== undefined && providerChannel(provider) !== channel) {
        issues.push(
          `routing/${key}/${index}: provider "${id}" delivers ${providerChannel(provider)}, not ${channel}`,
        );
      }
    });
  }
  return issues;
}

function crossKeyIssues(provider: ProviderConfig, at: string): string[] {
  const issues: string[] = [];
  if (provider.type === "smtp") {
    if (!isEmailFrom(provider.from))
      issues.push(`${at}/from: ${JSON.stringify(provider.from)} ${EMAIL_FROM_SHAPE}`);
    if (provider.replyTo !== undefined && !isEmailList(provider.replyTo))
      issues.push(
        `${at}/replyTo: ${JSON.stringify(provider.replyTo)} ${EMAIL_FROM_SHAPE} (several: a comma list)`,
      );
  }
  if (provider.type === "twilio") {
    const apiKey = provider.apiKeySid !== undefined || provider.apiKeySecret !== undefined;
    if (apiKey && (provider.apiKeySid === undefined || provider.apiKeySecret === undefined)) {
      issues.push(`${at}/apiKeySecret: apiKeySid and apiKeySecret go together`);
    }
    if (!apiKey && provider.authToken === undefined) {
      issues.push(`${at}/authToken: set authToken, or apiKeySid and apiKeySecret`);
    }
    if ((provider.from === undefined) === (provider.messagingServiceSid === undefined)) {
      issues.push(`${at}/from: set exactly one of from and messagingServiceSid`);
    }
    if (provider.statusCallbackUrl !== undefined && provider.authToken === undefined) {
      issues.push(
        `${at}/authToken: required to verify the signature of status callbacks (statusCallbackUrl is set)`,
      );
    }
  }
  if (provider.type === "smpp") {
    const { reconnectDelayMs, maxReconnectDelayMs } = provider;
    if (
      reconnectDelayMs !== undefined &&
      maxReconnectDelayMs !== undefined &&
      maxReconnectDelayMs < reconnectDelayMs
    ) {
      issues.push(`${at}/maxReconnectDelayMs: must not be below reconnectDelayMs`);
    }
  }
  return issues;
}

/**
 * Each URL read exactly as its sender will read it: a URL the schema's prefix pattern lets through
 * but the sender cannot parse would otherwise fail only in the delivery thread, after sends were
 * accepted. The issue names the key and never the URL, which may hold a password.
 */
function urlIssues(provider: ProviderConfig, at: string): string[] {
  switch (provider.type) {
    case "smtp":
      return urlIssue(`${at}/url`, provider.url, parseSmtpUrl);
    case "smpp":
      return urlIssue(`${at}/url`, provider.url, parseSmppUrl);
    case "webhook":
      return urlIssue(`${at}/url`, provider.url, parseHttpUrl);
    case "twilio":
      return [
        ...urlIssue(`${at}/baseUrl`, provider.baseUrl, parseHttpUrl),
        ...urlIssue(`${at}/statusCallbackUrl`, provider.statusCallbackUrl, parseStatusCallbackUrl),
      ];
    case "tencent":
    case "alibaba":
      return urlIssue(`${at}/baseUrl`, provider.baseUrl, parseHttpUrl);
  }
}

/** A provider setting that works, but likely not as meant: told at start, never refused. */
export interface ProviderWarning {
  provider: string;
  /** the setting's key, e.g. `url`, or the environment variable that set it (`VERIFYD_SMTP_URL`) */
  key: string;
  message: string;
}

/**
 * What an operator should hear about providers whose settings are valid but risky or likely
 * wrong. A warning never repeats a URL, which may hold a password. `fromEnvironment`: the ids of the
 * providers the environment made (VERIFYD_SMTP_URL's "smtp"), whose settings no file has.
 */
export function providerWarnings(
  providers: ProviderConfig[],
  fromEnvironment: readonly string[] = [],
): ProviderWarning[] {
  return providers.flatMap((provider): ProviderWarning[] => {
    if (provider.type === "smtp") {
      return smtpWarnings(provider, fromEnvironment.includes(provider.id) ? "VERIFYD_SMTP_URL" : "url");
    }
    if (provider.type === "twilio") return twilioWarnings(provider);
    return [];
  });
}

function smtpWarnings(provider: SmtpProviderConfig, urlKey: string): ProviderWarning[] {
  const smtp = parseSmtpUrl(provider.url);
  // A relay that offers no STARTTLS (or has it stripped on the way) gets the login and every code
  // in cleartext: nodemailer upgrades only when offered. Loopback never leaves the machine.
  if (!smtp.auth || smtp.secure || smtp.requireTLS || isLoopbackHost(smtp.host)) return [];
  return [
    {
      provider: provider.id,
      key: urlKey,
      message:
        "the SMTP login and the codes go in cleartext if the relay offers no STARTTLS: use smtps:// or add ?requireTLS=true",
    },
  ];
}

function twilioWarnings(provider: TwilioProviderConfig): ProviderWarning[] {
  if (provider.statusCallbackUrl === undefined) return [];
  const path = `/v1/callbacks/${provider.id}`;
  // Twilio posts to this URL exactly; verifyd takes a provider's callbacks only at its own path,
  // and answers any other provider id 401, so a mistyped one fails every callback (behind a proxy
  // that rewrites paths it may still be right, hence a warning).
  if (parseStatusCallbackUrl(provider.statusCallbackUrl).pathname.endsWith(path)) return [];
  return [
    {
      provider: provider.id,
      key: "statusCallbackUrl",
      message: `Twilio will post status callbacks to a path that does not end in ${path}, where verifyd takes this provider's: unless a proxy maps it there, every callback is refused (401)`,
    },
  ];
}

/**
 * A Twilio statusCallbackUrl. Twilio, not verifyd, calls it: it may carry the basic-auth
 * credentials Twilio sends and the connection overrides Twilio reads from its fragment
 * (`#rc=3&ct=2000`).
 */
function parseStatusCallbackUrl(text: string): URL {
  return parseProviderUrl(text, {
    kind: "HTTP",
    protocols: ["http:", "https:"],
    credentials: "pass",
    fragment: "allow",
  }).url;
}

/**
 * The issue of a provider URL its sender's parser refuses, naming `key`, as a list of none or one.
 * It tells what is wrong and never repeats the URL.
 */
export function urlIssue(key: string, url: string | undefined, parse: (url: string) => unknown): string[] {
  if (url === undefined) return [];
  try {
    parse(url);
    return [];
  } catch (error) {
    // Only the parser's own refusals are known to leave the URL out of their message.
    return [`${key}: ${error instanceof ProviderUrlError ? error.message : "not a valid URL"}`];
  }
}
