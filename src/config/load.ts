import { readFileSync } from "node:fs";
import { isSupportedCountry } from "libphonenumber-js/max";
import { Value } from "typebox/value";
import type { TemplateSet } from "../core/types.js";
import { parseSmtpUrl } from "../delivery/email/smtp/smtp-url.js";
import { appIssues } from "./app-issues.js";
import { parsePostgresUrl, parseRedisUrl } from "./backend-urls.js";
import {
  type DeliveryConfig,
  type ProviderConfig,
  type ProviderEntry,
  providerIssues,
  type RoutingConfig,
  urlIssue,
} from "./provider-schema.js";
import {
  type AppConfig,
  type ConfigInput,
  ConfigSchema,
  ENVIRONMENT_KEYS,
  PATTERN_MEANINGS,
} from "./schema.js";
import { EMAIL_FROM_SHAPE, isEmailFrom } from "./text-rules.js";
import { parseTrustProxyEntry } from "./trust-proxy.js";

export interface Config {
  mode: "dev" | "production";
  host: string;
  port: number;
  dataDir: string;
  /** newest first; empty means "generate one" (dev mode only) */
  secrets: string[];
  trustProxy: string[];
  redisUrl: string | undefined;
  databaseUrl: string | undefined;
  smtpUrl: string | undefined;
  emailFrom: string | undefined;
  defaultCountry: string;
  logLevel: string;
  sqliteSynchronous: "NORMAL" | "FULL";
  /** cluster mode: PostgreSQL connections per process */
  databasePoolSize: number;
  /** cluster mode: PostgreSQL schema; undefined = the server's search_path */
  databaseSchema: string | undefined;
  /** cluster mode: prefix of every Redis key */
  redisPrefix: string;
  /** cluster mode: migrate PostgreSQL at startup */
  migrateOnStart: boolean;
  apps: AppConfig[];
  templates: TemplateSet;
  disposableEmailDomains: string[];
  /** delivery providers; VERIFYD_SMTP_URL + VERIFYD_EMAIL_FROM add (or replace) the one with id "smtp" */
  providers: ProviderConfig[];
  /** ordered provider ids per `[app/]channel[:COUNTRY]` */
  routing: RoutingConfig;
  delivery: DeliveryConfig;
  /** the Bearer token `GET /metrics` asks for; unset: open in dev mode, not served in production */
  metricsToken: string | undefined;
}

/** Cluster mode (DESIGN.md "Modes"): both Redis and PostgreSQL are configured. */
export function isClusterMode(config: Config): config is Config & { redisUrl: string; databaseUrl: string } {
  return Boolean(config.redisUrl && config.databaseUrl);
}

/** Every problem found, each naming its key; thrown so the caller prints them all and exits. */
export class ConfigError extends Error {
  constructor(readonly issues: string[]) {
    super(`invalid configuration:\n${issues.map((issue) => `  - ${issue}`).join("\n")}`);
    this.name = "ConfigError";
  }
}

const LIST_KEYS = new Set<string>(["secret", "trustProxy"]);
const NUMBER_KEYS = new Set<string>(["port", "databasePoolSize"]);
const BOOLEAN_KEYS = new Set<string>(["migrateOnStart"]);

/**
 * Reads the configuration: the JSON file named by VERIFYD_CONFIG (its `"${NAME}"` strings read
 * environment variable NAME), then the VERIFYD_* variables, which win.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const issues: string[] = [];
  const input: Record<string, unknown> = {};
  const file = env.VERIFYD_CONFIG;
  if (file) {
    try {
      // Editors on Windows may save a byte order mark, which JSON.parse refuses as a character.
      const parsed: unknown = JSON.parse(readFileSync(file, "utf8").replace(/^\uFEFF/, ""));
      if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
        issues.push(`VERIFYD_CONFIG (${file}): must hold a JSON object`);
      } else {
        Object.assign(
          input,
          listsFromStrings(substituteEnvironment(parsed, env, issues, "") as Record<string, unknown>),
        );
      }
    } catch (error) {
      issues.push(`VERIFYD_CONFIG (${file}): ${(error as Error).message}`);
    }
  }
  const givenByEnvironment = new Set<string>();
  for (const [name, key] of Object.entries(ENVIRONMENT_KEYS)) {
    const raw = env[name];
    if (raw === undefined || raw === "") continue;
    givenByEnvironment.add(key);
    if (LIST_KEYS.has(key)) input[key] = splitList(raw);
    else if (NUMBER_KEYS.has(key)) input[key] = /^\d+$/.test(raw) ? Number(raw) : raw;
    else if (BOOLEAN_KEYS.has(key))
      input[key] = raw === "true" || raw === "1" ? true : raw === "false" || raw === "0" ? false : raw;
    else input[key] = raw;
  }
  // A value is named where it came from: `VERIFYD_PORT (port)` if the variable gave it, else the
  // file's key path, so a bad port in the file is not blamed on a variable that is unset.
  const nameOf: SettingName = (path) => {
    const top = path.split("/")[0] ?? "";
    const variable = KEY_TO_ENVIRONMENT[top];
    return variable && givenByEnvironment.has(top) ? `${variable} (${path})` : path || "(root)";
  };
  for (const error of Value.Errors(ConfigSchema, input)) {
    if (error.keyword === "boolean" || error.keyword === "anyOf") continue;
    // A number key's value as given: a file's "8080" (a string) is told apart from an environment
    // variable's text, which was read as a number where it was one.
    const given = input[error.instancePath.replace(/^\//, "")];
    const quotedNumber = typeof given === "string" && !givenByEnvironment.has(error.instancePath.slice(1));
    issues.push(
      describe(nameOf, error.instancePath, error.keyword, error.message, error.params, quotedNumber),
    );
  }
  if (issues.length > 0) throw new ConfigError(dedupe(issues));

  const config = toConfig(input as ConfigInput);
  issues.push(...crossFieldIssues(config, input as ConfigInput, nameOf));
  if (issues.length > 0) throw new ConfigError(issues);
  return config;
}

/**
 * The VERIFYD_* variables set that verifyd does not read: a misspelt one (VERIFYD_TRUST_PROXIES)
 * changes nothing, silently, unless it is told. The test suites' own (VERIFYD_TEST_*) are not
 * settings.
 */
export function unknownEnvironmentVariables(env: NodeJS.ProcessEnv = process.env): string[] {
  return Object.keys(env)
    .filter(
      (name) =>
        name.startsWith("VERIFYD_") &&
        !name.startsWith("VERIFYD_TEST_") &&
        name !== "VERIFYD_CONFIG" &&
        !Object.hasOwn(ENVIRONMENT_KEYS, name),
    )
    .sort();
}

/** A comma-separated list, as VERIFYD_SECRET and VERIFYD_TRUST_PROXY give it. */
function splitList(raw: string): string[] {
  return raw
    .split(",")
    .map((part) => part.trim())
    .filter(Boolean);
}

/**
 * The file takes the same settings as the environment, so a list key may also be one
 * comma-separated string there: `"secret": "${VAULT_SECRETS}"` reads a variable holding the list.
 * Split after `${NAME}` substitution, exactly as the environment variable is.
 */
function listsFromStrings(file: Record<string, unknown>): Record<string, unknown> {
  const result = { ...file };
  for (const key of LIST_KEYS) {
    const value = result[key];
    if (typeof value === "string") result[key] = splitList(value);
  }
  return result;
}

function toConfig(input: ConfigInput): Config {
  return {
    mode: input.mode ?? "dev",
    host: input.host ?? "127.0.0.1",
    port: input.port ?? 8080,
    dataDir: input.dataDir ?? "./data",
    secrets: input.secret ?? [],
    trustProxy: input.trustProxy ?? [],
    redisUrl: input.redisUrl,
    databaseUrl: input.databaseUrl,
    smtpUrl: input.smtpUrl,
    emailFrom: input.emailFrom,
    defaultCountry: input.defaultCountry ?? "CN",
    logLevel: input.logLevel ?? "info",
    sqliteSynchronous: input.sqliteSynchronous ?? "NORMAL",
    databasePoolSize: input.databasePoolSize ?? 10,
    databaseSchema: input.databaseSchema,
    redisPrefix: input.redisPrefix ?? "vd:",
    migrateOnStart: input.migrateOnStart ?? true,
    apps: input.apps ?? [],
    templates: (input.templates ?? {}) as TemplateSet,
    disposableEmailDomains: input.disposableEmailDomains ?? [],
    providers: withEnvironmentSmtp(input),
    routing: input.routing ?? {},
    delivery: input.delivery ?? {},
    metricsToken: input.metricsToken,
  };
}

/**
 * DESIGN.md: VERIFYD_SMTP_URL + VERIFYD_EMAIL_FROM alone switch email to SMTP. They become the
 * provider "smtp" (replacing a file entry of that id, since the environment wins).
 */
function withEnvironmentSmtp(input: ConfigInput): ProviderConfig[] {
  // Entries are checked per type by `providerIssues` before anything reads them as a ProviderConfig.
  const declared = (input.providers ?? []) as ProviderEntry[] as ProviderConfig[];
  const smtp = environmentSmtp(input);
  if (!smtp) return declared;
  return [smtp, ...declared.filter((provider) => provider.id !== smtp.id)];
}

/** The ids of the providers the environment made (for naming their settings as it does). */
export function environmentProviderIds(config: Config): string[] {
  return config.smtpUrl && config.emailFrom ? [ENVIRONMENT_SMTP_ID] : [];
}

const ENVIRONMENT_SMTP_ID = "smtp";

function environmentSmtp(input: ConfigInput): ProviderConfig | undefined {
  if (!input.smtpUrl || !input.emailFrom) return undefined;
  return { id: ENVIRONMENT_SMTP_ID, type: "smtp", url: input.smtpUrl, from: input.emailFrom };
}

/** How a message names the setting at `path` (a key path such as `trustProxy/1`). */
type SettingName = (path: string) => string;

function crossFieldIssues(config: Config, input: ConfigInput, nameOf: SettingName): string[] {
  const issues: string[] = [];
  if (config.mode === "production" && config.secrets.length === 0) {
    issues.push("VERIFYD_SECRET (secret): required in production mode");
  }
  if (Boolean(config.redisUrl) !== Boolean(config.databaseUrl)) {
    issues.push("VERIFYD_REDIS_URL and VERIFYD_DATABASE_URL: cluster mode needs both, embedded mode neither");
  }
  if (Boolean(config.smtpUrl) !== Boolean(config.emailFrom)) {
    issues.push("VERIFYD_SMTP_URL and VERIFYD_EMAIL_FROM: set both to send email over SMTP");
  }
  if (config.emailFrom !== undefined && !isEmailFrom(config.emailFrom)) {
    issues.push(`${nameOf("emailFrom")}: ${JSON.stringify(config.emailFrom)} ${EMAIL_FROM_SHAPE}`);
  }
  issues.push(...urlIssue(nameOf("smtpUrl"), config.smtpUrl, parseSmtpUrl));
  issues.push(...urlIssue(nameOf("redisUrl"), config.redisUrl, parseRedisUrl));
  issues.push(...urlIssue(nameOf("databaseUrl"), config.databaseUrl, parsePostgresUrl));
  // The schema's pattern lets through any two capitals; a region without numbering data would
  // make every national number (and every test recipient's phone number) fail to parse.
  const countryKnown = isSupportedCountry(config.defaultCountry);
  if (!countryKnown) {
    issues.push(
      `${nameOf("defaultCountry")}: "${config.defaultCountry}" is not a region with a phone numbering plan (ISO 3166-1 alpha-2, e.g. CN, US)`,
    );
  }
  config.trustProxy.forEach((entry, index) => {
    // A typo here must not start: every client would seem to come from the proxy's address and
    // share one per-IP budget.
    if (!parseTrustProxyEntry(entry)) {
      issues.push(
        `${nameOf(`trustProxy/${index}`)}: "${entry}" is not an IP address, a CIDR or one of loopback, linklocal, uniquelocal`,
      );
    }
  });
  config.apps.forEach((app, appIndex) => {
    (app.corsOrigins ?? []).forEach((entry, index) => {
      const issue = originIssue(entry);
      if (issue) issues.push(`apps/${appIndex}/corsOrigins/${index}: ${issue}`);
    });
  });
  // The file's entries under their own indices; the environment's SMTP is checked above by its name.
  const fromEnvironment = environmentSmtp(input);
  issues.push(
    ...providerIssues(input.providers ?? [], config.routing, fromEnvironment ? [fromEnvironment] : []),
  );
  issues.push(...appIssues(config.apps, config.templates, countryKnown ? config.defaultCountry : undefined));
  return issues;
}

const ORIGIN_SHAPE =
  'is not an origin: write it as a browser sends it in Origin, scheme://host[:port] (lower case, no default port, no path, query or trailing slash), e.g. "https://shop.example"';
// An app's own scheme, as a webview or an extension sends it (capacitor://localhost,
// chrome-extension://<id>): the URL parser gives such schemes no origin of their own to compare.
const APP_SCHEME_ORIGIN = /^[a-z][a-z0-9+.-]*:\/\/[a-z0-9.-]+(:\d{1,5})?$/;
// The URL standard's other special schemes: no page of theirs sends an Origin of that form.
const SPECIAL_SCHEMES = /^(ftp|wss?|file):/;

/**
 * Origins are granted by exact match with the request's Origin header, so an entry must be one as a
 * browser serializes it: anything else ("*", a trailing slash, ":443") never matches, and "null"
 * would grant every sandboxed page and file:// document.
 */
function originIssue(entry: string): string | undefined {
  let url: URL | undefined;
  try {
    url = new URL(entry);
  } catch {
    url = undefined;
  }
  const web = url !== undefined && (url.protocol === "http:" || url.protocol === "https:");
  if (web && url?.origin === entry) return undefined;
  if (!web && APP_SCHEME_ORIGIN.test(entry) && !SPECIAL_SCHEMES.test(entry)) return undefined;
  return web ? `"${entry}" ${ORIGIN_SHAPE}; did you mean "${url?.origin}"?` : `"${entry}" ${ORIGIN_SHAPE}`;
}

const KEY_TO_ENVIRONMENT = Object.fromEntries(
  Object.entries(ENVIRONMENT_KEYS).map(([name, key]) => [key, name]),
);

function describe(
  nameOf: SettingName,
  instancePath: string,
  keyword: string,
  message: string,
  params: unknown,
  quotedNumber = false,
): string {
  const path = instancePath.replace(/^\//, "");
  const {
    additionalProperties: extra,
    allowedValues: allowed,
    pattern,
  } = params as {
    additionalProperties?: string[];
    allowedValues?: unknown[];
    pattern?: string;
  };
  const meaning = keyword === "pattern" && pattern !== undefined ? PATTERN_MEANINGS[pattern] : undefined;
  const range = NUMBER_KEYS.has(path) && RANGE_KEYWORDS.has(keyword) ? numberRange(path) : undefined;
  const detail = extra
    ? `unknown key(s) ${extra.join(", ")}`
    : range
      ? `must be a whole number from ${range.minimum} to ${range.maximum}${quotedNumber ? ", written without quotes" : ""}`
      : meaning
        ? meaning
        : Array.isArray(allowed)
          ? `${message}: ${allowed.map((value) => JSON.stringify(value)).join(", ")}`
          : message;
  return `${nameOf(path)}: ${detail}`;
}

// "-1" from the environment fails as a type ("must be integer"), 70000 as a maximum: either way the
// reader needs the range.
const RANGE_KEYWORDS = new Set(["type", "minimum", "maximum"]);

function numberRange(key: string): { minimum: number; maximum: number } | undefined {
  const schema = (ConfigSchema.properties as Record<string, { minimum?: unknown; maximum?: unknown }>)[key];
  const { minimum, maximum } = schema ?? {};
  return typeof minimum === "number" && typeof maximum === "number" ? { minimum, maximum } : undefined;
}

function dedupe(issues: string[]): string[] {
  return [...new Set(issues)];
}

// JSON.parse keeps them as own keys, but merging the file (Object.assign) would set its prototype
// from "__proto__", its keys then read as settings past the unknown-key check.
const PROTOTYPE_KEYS = new Set(["__proto__", "constructor", "prototype"]);

/**
 * Replaces every `"${NAME}"` string of the file by environment variable NAME, and refuses any other
 * string holding `${`: it would be used as written (an API key `sk_live_${KEY}` working literally).
 */
function substituteEnvironment(
  value: unknown,
  env: NodeJS.ProcessEnv,
  issues: string[],
  path: string,
): unknown {
  if (typeof value === "string") {
    const match = /^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$/.exec(value);
    if (!match) {
      // The text is not printed: it may be a secret with the variable's name in it.
      if (value.includes("${")) {
        issues.push(
          `${path || "(root)"}: holds "\${" but is not one whole "\${NAME}" (NAME of letters, digits and _): the file reads a variable into a string that is exactly "\${NAME}" and nothing else, so put the whole value in the variable`,
        );
      }
      return value;
    }
    const name = match[1] as string;
    // (own names alone: a plain object's "__proto__" or "constructor" is no variable)
    const resolved = Object.hasOwn(env, name) ? env[name] : undefined;
    if (resolved === undefined) issues.push(`${path || "(root)"}: environment variable ${name} is not set`);
    return resolved ?? "";
  }
  if (Array.isArray(value))
    return value.map((item, index) => substituteEnvironment(item, env, issues, `${path}/${index}`));
  if (typeof value === "object" && value !== null) {
    const entries: [string, unknown][] = [];
    for (const [key, item] of Object.entries(value)) {
      const itemPath = path ? `${path}/${key}` : key;
      if (PROTOTYPE_KEYS.has(key)) {
        issues.push(
          `${itemPath}: "${key}" is no setting (JavaScript reads it as an object's prototype or constructor)`,
        );
        continue;
      }
      entries.push([key, substituteEnvironment(item, env, issues, itemPath)]);
    }
    return Object.fromEntries(entries);
  }
  return value;
}
