import type { FastifyRequest, HTTPMethods, InjectOptions, LightMyRequestResponse } from "fastify";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { backendMissing, missingReason, probePostgres, probeRedis } from "../../test/cluster/backends.js";
import { redisKeyCounts } from "../../test/cluster/key-counts.js";
import {
  type ClusterBackends,
  type ClusterTestServer,
  createTestServer,
  type TestServer,
  type TestServerOptions,
} from "../../test/harness.js";
import type { Account, App, Channel, Purpose } from "../core/types.js";
import { twilioSignature } from "../delivery/sms/twilio/twilio-status-callback.js";
import { signWebhookPayload } from "../delivery/sms/webhook/webhook-signature.js";
import { createSessionTokens } from "./dialects/cloudbase/session-tokens.js";
import { uidOf } from "./dialects/fresns/account-view.js";
import { fresnsSignature, SIGNED_HEADERS, type SignedHeaderName } from "./dialects/fresns/signature.js";

/**
 * Bad-input fuzzer over every route of every face (native, Fresns, CloudBase, IDaaS, dev API,
 * delivery callbacks, docs and health). The project rule it checks: every bad input gets a 4xx in
 * the caller's API shape; never a 5xx, a crash, a hang, or a half-written record.
 *
 * Routes come from the OpenAPI document (`fastify.swagger()`), plus a table of the routes hidden
 * from it; a route the app serves that neither lists fails the test, so a new route cannot slip
 * past the fuzzer. Each route starts from a hand-made valid request (one that gets past
 * authentication and signatures into the handler) and is mutated by a seeded PRNG, so a failure
 * reproduces with the same `FUZZ_SEED`. All failures are collected and listed at the end.
 *
 * It runs once per mode, since production changes what a request must carry: the native
 * API wants the app's API key, CORS grants only the apps' origins, and the dev API is absent. The
 * production pass adds mutations of the Authorization and Origin headers and a CORS preflight of
 * every route, and checks that no origin outside the apps' lists is ever granted.
 *
 * Two more passes send a sample of both modes' requests to a server in cluster mode (Redis and
 * PostgreSQL), where values reach stores with rules of their own (PostgreSQL refuses a NUL, for
 * one); their half-write check reads those stores. They need VERIFYD_TEST_REDIS_URL and
 * VERIFYD_TEST_DATABASE_URL, like test/cluster/: skipped with the reason when they are unset,
 * failed when VERIFYD_TEST_REQUIRE_BACKENDS=1 and they are not reachable.
 */

// --- capture of "unexpected error" logs ------------------------------------------------------------

// Every face's renderer reports a bug (an error it cannot map) through `logUnexpected`; wrapping it
// records the thrown error's stack, which names the line of src/ at fault, even with logs silenced.
const unexpected = vi.hoisted(() => [] as { method: string; url: string; error: string }[]);
vi.mock("./problem.js", async (importOriginal) => {
  const actual = await importOriginal<typeof import("./problem.js")>();
  return {
    ...actual,
    logUnexpected(request: FastifyRequest, error: unknown): string {
      unexpected.push({
        method: request.method,
        url: request.url,
        error: error instanceof Error ? (error.stack ?? error.message) : String(error),
      });
      return actual.logUnexpected(request, error);
    },
  };
});

// --- captcha answers, read where they are drawn ---------------------------------------------------

// Seeds that pass a captcha need its answer. The dev API that tells it is absent in production and
// the store keeps only a hash, so the generator's draws are recorded instead. Setup asks for one
// challenge at a time, so the last one drawn is the one it just asked for.
const drawn = vi.hoisted(() => ({ image: "", sliderX: 0 }));
vi.mock("../captcha/captcha-generator.js", async (importOriginal) => {
  const actual = await importOriginal<typeof import("../captcha/captcha-generator.js")>();
  return {
    ...actual,
    createCaptchaGenerator() {
      const generator = actual.createCaptchaGenerator();
      return {
        ...generator,
        async image() {
          const image = await generator.image();
          drawn.image = image.answer;
          return image;
        },
        async slider() {
          const slider = await generator.slider();
          drawn.sliderX = slider.x;
          return slider;
        },
      };
    },
  };
});

// --- constants ---------------------------------------------------------------------------------------

// FUZZ_SEED, FUZZ_CAP, FUZZ_COMBOS and FUZZ_DEEP widen a run by hand (a knob set applies to every
// pass); the defaults keep the embedded passes ~20 s together, and the cluster pass ~20 s.
const SEED = Number(process.env.FUZZ_SEED ?? 20_260_611);
const knob = (name: string, fallback: number) => Number(process.env[name] ?? fallback);

interface Pass {
  /** names the pass in the suite's title */
  title: string;
  mode: "dev" | "production";
  /** the cluster mode's backends; the embedded mode (SQLite) without */
  cluster?: ClusterBackends;
  /** mutations per route (the core set is sent whole; the extended set is sampled up to this) */
  cap: number;
  /** the cap bounds the core set too: `cap` of it at most are sampled, like the extended set */
  sampleCore?: boolean;
  /** random multi-mutation requests per route, on top of the cap */
  combos: number;
  /** random header/query/path mutations per route on top of the deep phase's per-field ones */
  deep: number;
}

/**
 * The cluster pass's Redis database. Counting its keys reads every key of the database (Redis has
 * no index by prefix), and the one the URL names is shared: with the other suites' keys and
 * whatever else a developer's Redis holds (a benchmark's leftovers can make it 30 ms a count). Its
 * own database keeps each count to the pass's keys; the prefix still keeps runs apart.
 */
const CLUSTER_REDIS_DATABASE = 15;

function ownDatabase(redisUrl: string): string {
  const url = new URL(redisUrl);
  url.pathname = `/${CLUSTER_REDIS_DATABASE}`;
  return url.toString();
}

const [redisProbe, postgresProbe] = await Promise.all([probeRedis(), probePostgres()]);
const CLUSTER_TITLE = "cluster backends";
const PASSES: Pass[] = [
  {
    title: "dev mode",
    mode: "dev",
    cap: knob("FUZZ_CAP", 110),
    combos: knob("FUZZ_COMBOS", 16),
    deep: knob("FUZZ_DEEP", 6),
  },
  // Production's core set is what it judges differently (see `mutationsOf`), and every route gets
  // its preflights whatever the cap; the rest is sampled.
  {
    title: "production mode",
    mode: "production",
    cap: knob("FUZZ_CAP", 70),
    combos: knob("FUZZ_COMBOS", 8),
    deep: knob("FUZZ_DEEP", 4),
  },
  // Dev mode's requests again, on the cluster stores. Each request costs round trips to Redis and
  // PostgreSQL, and its half-write check reads both twice, so it sends a sample of dev mode's core
  // set (hundreds of mutations on a route with many fields), a different one per seed.
  ...(redisProbe.ok && postgresProbe.ok
    ? [
        {
          title: `dev mode, ${CLUSTER_TITLE}`,
          mode: "dev" as const,
          cluster: { redisUrl: ownDatabase(redisProbe.url), databaseUrl: postgresProbe.url },
          cap: knob("FUZZ_CAP", 70),
          sampleCore: true,
          combos: knob("FUZZ_COMBOS", 6),
          deep: knob("FUZZ_DEEP", 3),
        },
        // Production's API keys, client ids and origins are looked up in PostgreSQL here.
        {
          title: `production mode, ${CLUSTER_TITLE}`,
          mode: "production" as const,
          cluster: { redisUrl: ownDatabase(redisProbe.url), databaseUrl: postgresProbe.url },
          cap: knob("FUZZ_CAP", 40),
          sampleCore: true,
          combos: knob("FUZZ_COMBOS", 4),
          deep: knob("FUZZ_DEEP", 2),
        },
      ]
    : []),
];
const REQUEST_TIMEOUT_MS = 5_000;
const MAX_LISTED_FAILURES = 30;

const PRODUCTION_ENV = {
  VERIFYD_MODE: "production",
  VERIFYD_SECRET: "fuzz-production-secret-0123456789abcdef",
};
const API_KEY = "vk_fuzz_default_0123456789abcdef";
const SIGNED_API_KEY = "vk_fuzz_signed_0123456789abcdef";
const DISABLED_API_KEY = "vk_fuzz_disabled_0123456789abcdef";
const SIGNED_CLIENT_ID = "fz-signed";
const DISABLED_CLIENT_ID = "fz-disabled";
/** the apps' CORS origins (one each); production grants no other */
const ORIGINS = { default: "https://app.fuzz.example", signed: "https://signed.fuzz.example" };
const ALLOWED_ORIGINS = new Set<string | undefined>(Object.values(ORIGINS));
const FRESNS_SECRET = "fuzz-fresns-secret-0123456789ab";
// The only peer whose X-Forwarded-For is believed; header mutations of XFF come from it.
const PROXY_ADDRESS = "192.0.2.1";
const TWILIO_TOKEN = "twilio-auth-token-0123456789";
const TWILIO_CALLBACK_URL = "https://verifyd.example.com/v1/callbacks/twilio";
const WEBHOOK_SECRET = "whsec_fuzz_0123456789";
const IDAAS_DEVICE: Record<string, string> = {
  "x-operating-sys-version": "windows10.1.1",
  "x-device-fingerprint": "156aysdna213sc50",
  "x-agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 13_3 like Mac OS X)",
  "x-client-id": "default",
};
/**
 * Records a refused request must not add (counters, send logs and captcha records may legitimately
 * grow): SQLite tables, and in cluster mode a PostgreSQL table of the same name, or Redis keys of
 * these kinds (src/storage/redis/redis-keys.ts: a code lives under its slot's key, or displaced,
 * under its own).
 */
const RECORDS: [name: string, clusterKeys: string[] | "postgres"][] = [
  ["codes", ["s", "c"]],
  ["outbox", "postgres"],
  ["accounts", "postgres"],
  ["tokens", ["t"]],
  ["sessions", "postgres"],
  ["idempotency", ["i"]],
];

// --- deterministic PRNG ------------------------------------------------------------------------------

/** mulberry32: tiny, fast, and good enough to pick mutations reproducibly. */
function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let x = state;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4_294_967_296;
  };
}
/** Each pass draws from its own generator, so running one pass alone (`-t`) draws the same requests. */
function chooser(seed: number) {
  const random = prng(seed);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T;
  function sample<T>(items: readonly T[], count: number): T[] {
    const pool = [...items];
    for (let i = pool.length - 1; i > 0; i -= 1) {
      const j = Math.floor(random() * (i + 1));
      [pool[i], pool[j]] = [pool[j] as T, pool[i] as T];
    }
    return pool.slice(0, count);
  }
  return { random, pick, sample };
}

// --- raw JSON values ----------------------------------------------------------------------------------

/** A JSON value written as is: -0, 1e309 and lone surrogates cannot come out of JSON.stringify. */
class RawJson {
  constructor(readonly text: string) {}
}
const raw = (text: string) => new RawJson(text);

function toJson(value: unknown): string {
  const raws: string[] = [];
  const text = JSON.stringify(value, (_key, item: unknown) => {
    if (!(item instanceof RawJson)) return item;
    raws.push(item.text);
    return `\u0000raw${raws.length - 1}\u0000`;
  });
  return (text ?? "").replace(
    /"\\u0000raw(\d+)\\u0000"/g,
    (_match, index: string) => raws[Number(index)] ?? "",
  );
}

/** Form encoding, as far as a form can carry a value: objects and arrays as their JSON text. */
function toForm(body: Record<string, unknown>): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(body)) {
    if (value === undefined) continue;
    params.append(
      key,
      value instanceof RawJson ? value.text : typeof value === "object" ? toJson(value) : String(value),
    );
  }
  return params.toString();
}

// --- requests ------------------------------------------------------------------------------------------

type Face = "native" | "fresns" | "cloudbase" | "idaas" | "dev" | "callbacks" | "infra";

/** One request under construction; mutations edit it, `build` serialises it. */
interface Req {
  method: string;
  /** Fastify's pattern, e.g. /v1/verifications/:id */
  path: string;
  /** path parameters, already URL-encoded (mutations put raw escapes such as %00 here) */
  params: Record<string, string>;
  /** query pairs, already URL-encoded; a null value writes the bare key */
  query: [string, string | null][];
  /** lower-case names; Node delivers repeated headers joined with ", ", so that is how "repeated" is sent */
  headers: Record<string, string>;
  body?: Record<string, unknown> | undefined;
  encoding: "json" | "form";
  /** a whole-body override (malformed JSON, wrong type, raw bytes); wins over `body` */
  payload?: string | Buffer | undefined;
  remoteAddress: string;
  /** headers a mutation set, which the signing step must leave as they are */
  locked: Set<string>;
  /** Fresns: the request is for the app with a secret, so it is signed after mutation */
  fresnsSigned?: boolean;
}

interface Mutation {
  label: string;
  /** what it edits ("body.code", "header.authorization", "query.to", "param.id"; "" for the whole body) */
  target: string;
  /** composable mutations edit one field/header/query key and may be stacked in random combos */
  composable: boolean;
  /**
   * the request must be answered as the face's unknown route where no route serves its method and
   * path: a check of the answer's shape alone passes a bad-body refusal, which shares it
   */
  unknownRoute?: true;
  apply(req: Req): void;
}

interface Route {
  method: string;
  path: string;
  face: Face;
  fields: string[];
  required: string[];
  queryNames: string[];
  paramNames: string[];
  headerNames: string[];
  hasBody: boolean;
}

interface Failure {
  route: string;
  mutation: string;
  request: string;
  status: number | string;
  body: string;
  problem: string;
}

// --- value pools -----------------------------------------------------------------------------------

/** A value, or a function of the field's valid value (so "[valid]" wraps what the seed put there). */
type FieldValue = unknown | ((current: unknown) => unknown);
const valid = (make: (current: unknown) => unknown) => make;

/** [label, value, core] — core values are sent for every field; the rest are sampled. */
const FIELD_VALUES: [string, FieldValue, boolean][] = [
  ["null", null, true],
  ["true", true, true],
  ["false", false, false],
  ["0", 0, true],
  ["-0", raw("-0"), false],
  ["1", 1, false],
  ["-1", -1, true],
  ["1.5", 1.5, true],
  ["1e309 (Infinity)", raw("1e309"), true],
  ["-1e309", raw("-1e309"), false],
  ["1e-400 (underflow)", raw("1e-400"), false],
  ["2^53+1", raw("9007199254740993"), true],
  ["30-digit integer", raw("123456789012345678901234567890"), false],
  ["[]", [], true],
  ["[valid]", valid((current) => [current]), true],
  ["[[[[]]]]", [[[[]]]], false],
  ["{}", {}, true],
  ["nested object", { a: { b: { c: { d: 1 } } } }, false],
  ['{"$gt":""}', { $gt: "" }, false],
  ["empty string", "", true],
  ["blank string", "   ", false],
  ["20 KB string", "x".repeat(20 * 1024), true],
  ["4 KB string", "y".repeat(4 * 1024), false],
  ["string with NUL", "a\u0000b", true],
  ["valid + NUL", valid((current) => `${String(current)}\u0000`), true],
  ["emoji", "😀👍🏽🇨🇳", true],
  ["RTL override", "\u202egnp.exe\u202c", false],
  ["U+2028/2029", "\u2028\u2029", true],
  ["lone surrogate", raw('"\\ud800"'), true],
  ["'__proto__'", "__proto__", true],
  ["'constructor'", "constructor", false],
  ["'hasOwnProperty'", "hasOwnProperty", false],
  ["'1e309'", "1e309", false],
  ["'NaN'", "NaN", false],
  ["'-0'", "-0", false],
  ["' 42 '", " 42 ", false],
  ["'0x1F'", "0x1F", false],
  ["full-width digits", "１２３４５６", false],
  ["'%00'", "%00", false],
  ["path traversal", "../../../etc/passwd", false],
  ["html", "<script>alert(1)</script>", false],
  ["sql", "' OR '1'='1' --", false],
  ["template syntax", "${7*7}{{7*7}}%s%n", false],
  ["CRLF", "a\r\nSet-Cookie: x=1", false],
  ["control characters", "\u0001\u001f\u007f", false],
  ["an email", "fz@example.com", false],
  ["an E.164 number", "+8613800138000", false],
  ["valid upper-case", valid((current) => String(current).toUpperCase()), false],
  ["valid padded", valid((current) => ` ${String(current)} `), false],
  ["valid x 300", valid((current) => String(current).repeat(300)), false],
];

/** Hostile strings for the deep phase, where a field's value is at least of its documented type. */
const DEEP_STRINGS: [string, string][] = [
  ["'__proto__'", "__proto__"],
  ["'constructor'", "constructor"],
  ["emoji", "😀👍🏽🇨🇳"],
  ["U+2028/2029", "\u2028\u2029"],
  ["string with NUL", "a\u0000b"],
  ["4 KB string", "y".repeat(4 * 1024)],
  ["RTL override", "\u202egnp.exe\u202c"],
  ["blank string", "   "],
  // Base64 that decrypts (or fails to) with the slider's AES key: the encrypted-point path.
  ["base64, one AES block", `${"A".repeat(22)}==`],
  ["base64, not a whole block", "QUJD"],
];

/** Header values Node can deliver: printable ASCII, tab and Latin-1 (it decodes header bytes as latin1). */
const HEADER_VALUES: [string, (current: string | undefined) => string | null, boolean][] = [
  ["absent", () => null, true],
  ["empty", () => "", true],
  ["blank", () => "   ", false],
  ["8 KB", () => "h".repeat(8 * 1024), true],
  ["repeated", (current) => `${current ?? "a"}, ${current ?? "b"}`, true],
  ["latin-1", () => "caf\u00e9\u00ff\u00a0", true],
  ["valid + tab junk", (current) => `${current ?? ""}\tjunk`, false],
  ["'__proto__'", () => "__proto__", true],
  ["'constructor'", () => "constructor", false],
  ["'null'", () => "null", false],
  ["-1", () => "-1", false],
  ["1e309", () => "1e309", false],
  ["path traversal", () => "../../../etc/passwd", false],
  ["%00", () => "%00", false],
  ["valid padded", (current) => ` ${current ?? ""} `, false],
  ["quotes and q-values", () => '"a","b";q=0.5, *;q=abc', false],
  ["30 digits", () => "1".repeat(30), false],
];

/** Extra values for headers with a grammar of their own. */
const HEADER_EXTRAS: Record<string, [string, string][]> = {
  authorization: [
    ["Bearer with nothing", "Bearer "],
    ["Bearer with two words", "Bearer a b"],
    ["Bearer 300 chars", `Bearer ${"k".repeat(300)}`],
    ["Bearer 5000 chars", `Bearer ${"k".repeat(5000)}`],
    ["Basic", "Basic Zm9vOmJhcg=="],
    // CloudBase reads a Basic header's user as the client id: PostgreSQL refuses a NUL in it.
    ["Basic, a NUL in the user", basicCredentials(Buffer.from("de\u0000fault:x"))],
    ["Basic, a control character in the user", basicCredentials(Buffer.from("de\u001bfault:x"))],
    ["Basic, a user that is not UTF-8", basicCredentials(Buffer.from([0x64, 0xff, 0xfe, 0x3a, 0x78]))],
    ["JWT-shaped junk", "Bearer a.b.c"],
    ["alg none JWT", "Bearer eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ4IiwiYXVkIjoiZGVmYXVsdCJ9."],
    ["the API key, lower-case scheme", `bearer ${API_KEY}`],
  ],
  "x-forwarded-for": [
    ["garbage", "not-an-ip"],
    ["a list", "203.0.113.9, 198.51.100.3"],
    ["IPv6", "2001:db8::1"],
    ["IPv4-mapped", "::ffff:203.0.113.9"],
    ["with port", "203.0.113.9:8080"],
    ["bracketed IPv6 with port", "[2001:db8::1]:443"],
    ["out of range", "999.999.999.999"],
    ["zone id", "fe80::1%eth0"],
    ["commas only", ",,,"],
    ["'unknown'", "unknown"],
  ],
  "idempotency-key": [
    ["255 chars", "k".repeat(255)],
    ["256 chars", "k".repeat(256)],
    ["non-ASCII", "cl\u00e9"],
  ],
  "x-device-ip": [
    ["garbage", "not-an-ip"],
    ["IPv6", "2001:db8::1"],
    ["out of range", "999.1.1.1"],
  ],
  "x-fresns-client-timezone": [
    ["+8", "+8"],
    ["-5:30", "-5:30"],
    ["+99", "+99"],
    ["-99:99", "-99:99"],
    ["IANA name", "Asia/Shanghai"],
    ["junk", "+abc"],
    ["+1e309", "+1e309"],
  ],
  "x-fresns-signature-timestamp": [
    ["10 digits", "1674161913"],
    ["13 digits", "1674161913192"],
    ["13 nines", "9999999999999"],
    ["9 digits", "123456789"],
    ["negative", "-1674161913"],
  ],
  "x-fresns-uid": [
    ["12 digits", "999999999999"],
    ["13 digits", "9999999999999"],
    ["with sign", "+1"],
  ],
  "x-l": [
    ["zh", "zh"],
    ["ZH-cn", "ZH-cn"],
  ],
  "x-fresns-client-lang-tag": [
    ["zh-Hant", "zh-Hant"],
    ["zh", "zh"],
    ["a locale too long", "zh-Hant-TW-x-abcdefgh-ijklmnop"],
  ],
};

/** Extra values of the production pass, where the API key and the Origin decide. */
const PRODUCTION_HEADER_EXTRAS: Record<string, [string, string][]> = {
  authorization: [
    ["the key without a scheme", API_KEY],
    ["the key under scheme Token", `Token ${API_KEY}`],
    ["the key as Basic credentials", `Basic ${Buffer.from(`${API_KEY}:`).toString("base64")}`],
    ["tab after Bearer", `Bearer\t${API_KEY}`],
    ["a wrong key", "Bearer vk_fuzz_wrong_0123456789abcdef"],
    ["the key with its last character changed", `Bearer ${API_KEY.slice(0, -1)}0`],
    ["another app's key", `Bearer ${SIGNED_API_KEY}`],
    ["a disabled app's key", `Bearer ${DISABLED_API_KEY}`],
  ],
  origin: [
    ["an allowed origin", ORIGINS.default],
    ["another app's origin", ORIGINS.signed],
    ["an origin no app allows", "https://evil.example"],
    ["'null' (an opaque origin)", "null"],
    ["allowed, upper-case", ORIGINS.default.toUpperCase()],
    ["allowed with a trailing slash", `${ORIGINS.default}/`],
    ["allowed with a path", `${ORIGINS.default}/page`],
    ["allowed with its default port", `${ORIGINS.default}:443`],
    ["allowed over http", ORIGINS.default.replace("https:", "http:")],
    ["allowed host as a prefix", `${ORIGINS.default}.evil.example`],
    ["allowed host as a suffix", ORIGINS.default.replace("https://", "https://evil")],
    ["malformed", "not an origin"],
    ["scheme only", "https://"],
  ],
  "x-fresns-app-id": [["a disabled app's client id", DISABLED_CLIENT_ID]],
  "x-client-id": [["a disabled app's client id", DISABLED_CLIENT_ID]],
  client_id: [["a disabled app's client id", DISABLED_CLIENT_ID]],
};

/**
 * The CORS preflights of the production pass, sent to every route: a browser's OPTIONS with only
 * Origin and the Access-Control-Request-* headers (null leaves one out). `asked` is the route's
 * method and the headers its seed sends.
 */
function preflights(asked: { method: string; headers: string }): Mutation[] {
  const cases: [string, string | null, string | null, string | null][] = [
    ["an allowed origin", ORIGINS.default, asked.method, asked.headers],
    ["another app's origin", ORIGINS.signed, asked.method, asked.headers],
    ["an origin no app allows", "https://evil.example", asked.method, asked.headers],
    ["origin 'null'", "null", asked.method, asked.headers],
    ["a malformed origin", "not an origin", asked.method, asked.headers],
    ["an allowed origin, upper-case", ORIGINS.default.toUpperCase(), asked.method, asked.headers],
    ["two origins", `${ORIGINS.default}, https://evil.example`, asked.method, asked.headers],
    ["no origin", null, asked.method, asked.headers],
    ["no request method", ORIGINS.default, null, asked.headers],
    ["request method junk", ORIGINS.default, "get, TRACE", asked.headers],
    ["request headers of 8 KB", ORIGINS.default, asked.method, "x-h".repeat(2730)],
    ["request headers latin-1 and __proto__", ORIGINS.default, asked.method, "__proto__, caf\u00e9"],
  ];
  return cases.map(([label, origin, method, headers]) => ({
    label: `preflight: ${label}`,
    target: "",
    composable: false,
    apply(req) {
      req.method = "OPTIONS";
      req.body = undefined;
      req.payload = undefined;
      req.headers = {};
      if (origin !== null) req.headers.origin = origin;
      if (method !== null) req.headers["access-control-request-method"] = method;
      if (headers !== null) req.headers["access-control-request-headers"] = headers;
    },
  }));
}

const COMMON_HEADERS = ["authorization", "x-forwarded-for", "x-request-id", "accept-language", "user-agent"];
const FACE_HEADERS: Record<Face, string[]> = {
  native: ["idempotency-key", "x-captcha-token"],
  fresns: [
    "x-fresns-app-id",
    "x-fresns-client-lang-tag",
    "x-fresns-client-timezone",
    "x-fresns-aid",
    "x-fresns-aid-token",
    "x-fresns-uid",
    "x-fresns-uid-token",
    "x-fresns-signature",
    "x-fresns-signature-timestamp",
    "x-fresns-client-platform-id",
    "x-fresns-client-version",
  ],
  cloudbase: ["x-client-id", "client_id", "x-device-id", "x-captcha-token"],
  idaas: ["x-operating-sys-version", "x-device-fingerprint", "x-agent", "x-client-id", "x-device-ip", "x-l"],
  dev: [],
  callbacks: ["x-twilio-signature", "x-verifyd-signature"],
  infra: [],
};

/**
 * Query parameters a face reads on every route, documented there or not: each is mutated on each
 * of the face's routes (a route that reads one without a schema for it got it as an array when
 * repeated).
 */
const FACE_QUERIES: Partial<Record<Face, string[]>> = { cloudbase: ["client_id"] };

const PARAM_VALUES: [string, string, boolean][] = [
  ["600 chars", "p".repeat(600), true],
  ["513 chars (over maxParamLength)", "p".repeat(513), true],
  ["512 chars", "p".repeat(512), false],
  ["65 chars", "p".repeat(65), false],
  ["129 chars", "p".repeat(129), false],
  ["%00", "%00", true],
  ["a%00b", "a%00b", false],
  ["encoded ../", "..%2F..%2Fetc%2Fpasswd", true],
  ["%2e%2e", "%2e%2e", false],
  ["..", "..", false],
  ["é", "%C3%A9", false],
  ["emoji", "%F0%9F%98%80", true],
  ["RTL override", "%E2%80%AE", false],
  ["U+2028", "%E2%80%A8", false],
  ["lone %", "%", true],
  ["%zz", "%zz", true],
  ["truncated UTF-8", "%E0%A4%A", false],
  ["%FF", "%FF", true],
  ["__proto__", "__proto__", true],
  ["constructor", "constructor", false],
  ["%20", "%20", false],
  ["empty", "", true],
];

// --- routes from the app ---------------------------------------------------------------------------

interface OpenApiOperation {
  parameters?: { in: string; name: string }[];
  requestBody?: {
    content?: Record<string, { schema?: { properties?: Record<string, unknown>; required?: string[] } }>;
  };
}

function faceOf(path: string): Face {
  if (path.startsWith("/v1/dev/")) return "dev";
  if (path.startsWith("/v1/callbacks/")) return "callbacks";
  if (path.startsWith("/v1/")) return "native";
  if (path.startsWith("/api/v2/sdk/")) return "idaas";
  if (path.startsWith("/api/v2/") || path.startsWith("/fresns-api/")) return "fresns";
  if (path.startsWith("/auth/v1/")) return "cloudbase";
  return "infra";
}

/** Whether a refusal's body is in the shape its face answers in (see each face's error map). */
function inCallersShape(face: Face, status: number, contentType: string, body: unknown): boolean {
  const fields = (body ?? {}) as Record<string, unknown>;
  const problem =
    contentType.startsWith("application/problem+json") &&
    typeof fields.code === "string" &&
    fields.status === status;
  switch (face) {
    case "cloudbase":
      return typeof fields.error === "string" && typeof fields.error_code === "number";
    case "idaas":
      return (
        (typeof fields.error_code === "string" && typeof fields.error_msg === "string") ||
        (status === 404 && problem)
      );
    case "fresns":
      return (
        (typeof fields.code === "number" && typeof fields.message === "string") || (status === 404 && problem)
      );
    default:
      return problem;
  }
}

/** Whether an answer is its face's to a path no route serves (each face's not-found handler). */
function unknownRouteAnswer(face: Face, status: number, body: unknown): boolean {
  const fields = (body ?? {}) as Record<string, unknown>;
  if (status !== 404) return false;
  switch (face) {
    case "cloudbase":
      return fields.error_code === 4040;
    case "idaas":
      return typeof fields.error_code === "string" && fields.error_code.endsWith("PARAM.1006");
    case "fresns":
      return fields.code === 404;
    default:
      return fields.code === "ROUTE_NOT_FOUND";
  }
}

function routeOf(method: string, path: string, operation: OpenApiOperation = {}): Route {
  const face = faceOf(path);
  const parameters = operation.parameters ?? [];
  const bodySchema = operation.requestBody?.content?.["application/json"]?.schema;
  return {
    method,
    path,
    face,
    fields: Object.keys(bodySchema?.properties ?? {}),
    required: bodySchema?.required ?? [],
    queryNames: parameters.filter((p) => p.in === "query").map((p) => p.name),
    paramNames: [...path.matchAll(/:(\w+)|\*/g)].map((match) => match[1] ?? "*"),
    headerNames: [
      ...new Set([
        ...COMMON_HEADERS,
        ...FACE_HEADERS[face],
        ...parameters.filter((p) => p.in === "header").map((p) => p.name.toLowerCase()),
      ]),
    ],
    hasBody: method === "POST" || method === "PUT",
  };
}

/**
 * The routes the app serves, read from `printRoutes` (the one listing that includes routes hidden
 * from OpenAPI). HEAD routes Fastify adds for every GET, and the CORS preflight, are left out.
 */
function servedRoutes(tree: string): { method: string; path: string }[] {
  const found: { method: string; path: string }[] = [];
  const stack: string[] = [];
  for (const line of tree.split("\n")) {
    const match = /^((?:│ {3}| {4})*)(?:├── |└── )(.*?)(?: \(([^)]*)\))?$/.exec(line);
    if (!match) continue;
    const depth = (match[1] ?? "").length / 4;
    stack.length = depth;
    const path = `${stack.at(-1) ?? ""}${match[2] ?? ""}`;
    stack.push(path);
    for (const method of (match[3] ?? "").split(",").map((m) => m.trim())) {
      if (method && method !== "HEAD" && method !== "OPTIONS") found.push({ method, path });
    }
  }
  return found;
}

// --- the fuzzing session -----------------------------------------------------------------------------

type FuzzedServer = TestServer | ClusterTestServer;

describe.each(PASSES)("bad-input fuzzer over every route ($title)", (pass) => {
  const production = pass.mode === "production";
  const { random, pick, sample } = chooser(SEED);
  const { cluster } = pass;
  const serve = (options: TestServerOptions) =>
    cluster ? createTestServer({ ...options, cluster }) : createTestServer(options);
  let t: FuzzedServer;
  /** the delivery callbacks' own server: its SMS providers are the ones that post callbacks */
  let callbackServer: FuzzedServer;
  let requestNumber = 0;
  const failures: Failure[] = [];
  const stats = new Map<string, RouteStats>();

  // Values the seeds need, made once in `beforeAll` by real journeys through the API.
  const live = {
    checkId: "",
    getId: "",
    cancelId: "",
    redeemToken: "",
    nativeCaptcha: { token: "", answer: "" },
    devCaptchaToken: "",
    cbVerificationId: "",
    cbCaptchaToken: "",
    idaasCaptcha: { token: "", wrongPoint: "" },
    fresnsEmail: { default: "fresns-default@example.com", signed: "fresns-signed@example.com" },
    fresnsSession: { default: { aid: "", token: "", uid: "" }, signed: { aid: "", token: "", uid: "" } },
    idaasEmail: "idaas-user@example.com",
  };
  const apps: Record<"default" | "signed", App> = {} as Record<"default" | "signed", App>;
  let cloudbaseCredentials: () => Promise<{ access_token: string; refresh_token: string }>;

  const email = (n: number) => `fz${n}@example.com`;
  const mobile = (n: number) => `138${String(n % 100_000_000).padStart(8, "0")}`;
  const deepMobile = (n: number) => `139${String(n % 100_000_000).padStart(8, "0")}`;
  const enc = encodeURIComponent;
  let setupAddress = 0;
  /** A fresh client address for the setup and deep-seed calls, so risk rules never ask them for a captcha. */
  const setupIp = () => {
    setupAddress += 1;
    return `172.16.${setupAddress & 255}.${((setupAddress >> 8) & 255) + 1}`;
  };

  beforeAll(async () => {
    t = await serve({
      env: { VERIFYD_TRUST_PROXY: PROXY_ADDRESS, ...(production ? PRODUCTION_ENV : {}) },
      apps: [
        // Deep-phase SMS go to +86139…, kept clear of the pumping guard's per-prefix budget, which
        // the first phase's many +86138… sends use up.
        {
          id: "default",
          name: "Fuzz",
          apiKeys: [API_KEY],
          corsOrigins: [ORIGINS.default],
          abuse: { pumping: { safeList: ["+86139"] } },
        },
        {
          id: "signed",
          clientId: SIGNED_CLIENT_ID,
          fresnsSecret: FRESNS_SECRET,
          apiKeys: [SIGNED_API_KEY],
          corsOrigins: [ORIGINS.signed],
        },
        // Named only by the production pass's mutations: its key and client id must be refused.
        { id: "disabled", clientId: DISABLED_CLIENT_ID, disabled: true, apiKeys: [DISABLED_API_KEY] },
      ],
    });
    // Providers that post status callbacks, so /v1/callbacks/{provider} reaches their handlers.
    // This server never delivers, so nothing leaves the process.
    callbackServer = await serve({
      devSender: true,
      ...(production ? { env: PRODUCTION_ENV } : {}),
      configFile: {
        providers: [
          {
            id: "twilio",
            type: "twilio",
            accountSid: `AC${"a1".repeat(16)}`,
            authToken: TWILIO_TOKEN,
            from: "+14155550199",
            statusCallbackUrl: TWILIO_CALLBACK_URL,
            baseUrl: "http://127.0.0.1:9",
          },
          { id: "gateway", type: "webhook", url: "http://127.0.0.1:9/sms", secret: WEBHOOK_SECRET },
        ],
      },
    });
    apps.default = (await t.engine.apps.byId("default")) as App;
    apps.signed = (await t.engine.apps.byId("signed")) as App;

    // Native: three live verifications (check, get, cancel) and a token to redeem.
    live.checkId = (await codeFor(apps.default, "email", "setup-check@example.com", "sign_in")).id;
    live.getId = (await codeFor(apps.default, "email", "setup-get@example.com", "sign_in")).id;
    live.cancelId = (await codeFor(apps.default, "email", "setup-cancel@example.com", "sign_in")).id;
    live.redeemToken = await tokenFor(apps.default, "email", "setup-redeem@example.com", "sign_in");
    live.cbVerificationId = (await codeFor(apps.default, "email", "setup-cb@example.com", "sign_in")).id;
    // Captcha challenges for the verify routes and the dev API.
    live.nativeCaptcha = await nativeChallenge();
    live.devCaptchaToken = (await nativeChallenge()).token;
    live.cbCaptchaToken = (await cloudbaseChallenge()).token;
    // 50 px off the piece, beyond the slider's tolerance: a fixed guess would be right now and then.
    live.idaasCaptcha = {
      token: (await idaasChallenge()).token,
      wrongPoint: `{"x":${(drawn.sliderX + 50).toFixed(1)},"y":5.0}`,
    };

    // Logged-in accounts: Fresns (one per app, with a session), IDaaS and CloudBase.
    for (const which of ["default", "signed"] as const) {
      const account = await t.engine.accounts.create({ app: apps[which], email: live.fresnsEmail[which] });
      const session = await t.engine.accounts.createSession(apps[which], account, 86_400, "fresns");
      live.fresnsSession[which] = { aid: account.id, token: session.token, uid: String(uidOf(account.id)) };
    }
    await t.engine.accounts.create({ app: apps.default, email: live.idaasEmail, phone: "+8613900000000" });
    const cbAccount = await t.engine.accounts.create({
      app: apps.default,
      email: "cloudbase-user@example.com",
      username: "fz_cb_user",
    });
    // Fresh CloudBase credentials per request: sign-out, revoke and refresh end the session they use.
    const tokens = createSessionTokens(t.engine);
    cloudbaseCredentials = () => tokens.issue(apps.default, cbAccount);
  });

  afterAll(async () => {
    await t?.close();
    await callbackServer?.close();
  });

  // --- real codes, tokens and captcha passes ----------------------------------------------------------

  /** A pending code for `to`, as delivered; sent through the engine so no face's captcha gets in the way. */
  async function codeFor(app: App, channel: Channel, to: string, purpose: Purpose) {
    const sent = await t.engine.sendCode({ app, channel, to, purpose, rule: "any", clientIp: setupIp() });
    await t.deliverAll();
    const code = (channel === "email" ? t.email : t.sms).lastCodeFor(sent.record.to);
    if (!code) throw new Error(`no code delivered to ${to}`);
    return { id: sent.record.id, code };
  }

  /** An approval token (what a code check hands out) for `to`. */
  async function tokenFor(app: App, channel: Channel, to: string, purpose: Purpose): Promise<string> {
    const { id, code } = await codeFor(app, channel, to, purpose);
    const checked = await t.engine.checkCode({ app, target: { id }, code });
    return checked.token as string;
  }

  /** What the native API wants of its caller: nothing in dev mode, the app's key in production. */
  const nativeAuth: Record<string, string> = production ? { authorization: `Bearer ${API_KEY}` } : {};

  /** An image challenge from a face's captcha route, and its answer. */
  async function imageChallenge(
    url: string,
    payload: object,
    headers: Record<string, string> = {},
  ): Promise<{ token: string; answer: string }> {
    const reply = await t.fastify.inject({ method: "POST", url, payload, headers, remoteAddress: setupIp() });
    return { token: reply.json().token as string, answer: drawn.image };
  }
  const nativeChallenge = () => imageChallenge("/v1/captcha", { type: "image" }, nativeAuth);
  const cloudbaseChallenge = () => imageChallenge("/auth/v1/captcha/data", {});

  /** An IDaaS slider challenge and its answer as the widget sends it: `{"x":237.0,"y":5.0}`. */
  async function idaasChallenge(): Promise<{ token: string; point: string }> {
    const reply = await t.fastify.inject({
      method: "GET",
      url: "/api/v2/sdk/captcha",
      headers: IDAAS_DEVICE,
      remoteAddress: setupIp(),
    });
    return { token: reply.json().token as string, point: `{"x":${drawn.sliderX.toFixed(1)},"y":5.0}` };
  }

  /** An IDaaS pass (`<pass token>---<point>`) bound to `sender`, as the send routes require. */
  async function idaasPass(sender: string): Promise<string> {
    const { token, point } = await idaasChallenge();
    const reply = await t.fastify.inject({
      method: "POST",
      url: "/api/v2/sdk/captcha/verify",
      headers: IDAAS_DEVICE,
      payload: { point_json: point, token, sender },
      remoteAddress: setupIp(),
    });
    return reply.json().captcha_token as string;
  }

  // --- seeds: one plausible valid request per route -------------------------------------------------

  const base = (route: Route, n: number): Req => ({
    method: route.method,
    path: route.path,
    params: {},
    query: [],
    headers: {},
    encoding: "json",
    // A different /24 for consecutive requests, so per-IP and per-subnet rules stay out of the way.
    remoteAddress: `10.${n & 255}.${(n >> 8) & 255}.${((n >> 16) & 127) + 1}`,
    locked: new Set(),
  });

  type Which = "default" | "signed";

  /** Headers of a Fresns request for the app `default` (unsigned) or `signed` (signed after mutation). */
  function fresnsHeaders(req: Req, which: Which, n: number, session?: { aid: string; token: string }): void {
    Object.assign(req.headers, {
      "x-fresns-client-lang-tag": n % 3 === 0 ? "zh-Hans" : "en",
      "x-fresns-client-platform-id": "4",
      "x-fresns-client-version": "2.0.0",
      "x-fresns-client-timezone": "+8",
    });
    if (which === "signed") {
      req.headers["x-fresns-app-id"] = SIGNED_CLIENT_ID;
      req.fresnsSigned = true;
    }
    if (session) {
      req.headers["x-fresns-aid"] = session.aid;
      req.headers["x-fresns-aid-token"] = session.token;
    }
  }

  /** The route's key in the seed tables: both Fresns prefixes share one, HEAD shares its GET's. */
  const seedKey = (route: Route) =>
    `${route.method === "HEAD" ? "GET" : route.method} ${route.path.replace(
      /^\/fresns-api\/v1\/|^\/api\/v2\/(?!sdk\/)/,
      "<fresns>/",
    )}`;

  async function seed(route: Route, n: number): Promise<Req> {
    const req = base(route, n);
    const which: Which = n % 2 === 0 ? "default" : "signed";
    const fresnsLogin = () => {
      const session = live.fresnsSession[which];
      fresnsHeaders(req, which, n, session);
      // Now and then the user headers too: X-Fresns-Uid must be the account's own.
      if (n % 5 === 0)
        Object.assign(req.headers, { "x-fresns-uid": session.uid, "x-fresns-uid-token": session.token });
    };
    switch (seedKey(route)) {
      case "POST /v1/verifications":
        req.body = { channel: "email", to: email(n), purpose: "sign_in" };
        if (n % 2 === 1) {
          // An API-key caller: `client_ip` and `device_id` are believed only from one.
          req.headers.authorization = `Bearer ${API_KEY}`;
          Object.assign(req.body, { client_ip: `203.0.${n & 255}.7`, device_id: `device-${n}` });
        }
        if (n % 3 === 0) req.headers["idempotency-key"] = `fz-${n}`;
        if (n % 5 === 0)
          Object.assign(req.body, { channel: "sms", to: mobile(n), country: "CN", locale: "zh-CN" });
        // The logged-in rules: a contact to bind, or the account's own contact (no `to`).
        if (n % 7 === 0)
          Object.assign(req.body, { purpose: "bind_contact", account_id: live.fresnsSession.default.aid });
        if (n % 7 === 1) {
          delete req.body.to;
          Object.assign(req.body, { purpose: "change_contact", account_id: live.fresnsSession.default.aid });
        }
        break;
      case "POST /v1/captcha":
        // Mostly image challenges: a slider renders two PNGs, which the time budget cannot afford often.
        req.body = { type: n % 8 === 0 ? "slider" : "image" };
        break;
      case "POST /v1/captcha/verify":
        req.body = { token: live.nativeCaptcha.token, answer: live.nativeCaptcha.answer, to: email(n) };
        break;
      case "POST /v1/verifications/check":
        req.body = { id: live.checkId, code: "000000" };
        break;
      case "GET /v1/verifications/:id":
        req.params.id = live.getId;
        break;
      case "POST /v1/verifications/:id/cancel":
        req.params.id = live.cancelId;
        break;
      case "POST /v1/tokens/redeem":
        req.body = { token: live.redeemToken, purposes: ["sign_in"] };
        break;
      case "GET /v1/dev/inbox":
        req.query.push(["to", enc(n % 2 === 0 ? "setup-get@example.com" : "+8613800138000")]);
        break;
      case "GET /v1/dev/captcha/:token":
        req.params.token = live.devCaptchaToken;
        break;
      case "POST /v1/callbacks/:provider":
        // Two providers, two body formats; both are signed after mutation (see `finalize`).
        if (n % 2 === 0) {
          req.params.provider = "twilio";
          req.encoding = "form";
          req.body = {
            AccountSid: `AC${"a1".repeat(16)}`,
            MessageSid: `SM${"d4".repeat(16)}`,
            MessageStatus: "undelivered",
            ErrorCode: "30003",
          };
        } else {
          req.params.provider = "gateway";
          req.body = { id: `msg_fuzz_${n}`, status: "failed", error: "handset off" };
        }
        break;
      case "POST <fresns>/common/send-verify-code":
        fresnsHeaders(req, which, n);
        req.body = { type: "email", useType: 5, templateId: 7, account: email(n) };
        if (n % 4 === 3)
          req.body = { type: "sms", useType: 5, templateId: 1, account: mobile(n), countryCode: 86 };
        // useType 3 (logged in, contact blank) and 4 (the account's own contact) need a session.
        if (n % 6 === 1) {
          fresnsLogin();
          req.body = { type: "sms", useType: 3, templateId: 4, account: mobile(n), countryCode: 86 };
        }
        if (n % 6 === 2) {
          fresnsLogin();
          req.body = { type: "email", useType: 4, templateId: 8 };
        }
        break;
      case "POST <fresns>/account/register":
        fresnsHeaders(req, which, n);
        req.body = {
          type: "email",
          account: email(n),
          verifyCode: "123456",
          password: Buffer.from("password123").toString("base64"),
          nickname: "Fuzz",
        };
        break;
      case "POST <fresns>/account/login":
        fresnsHeaders(req, which, n);
        req.body = { type: "email", account: live.fresnsEmail[which], verifyCode: "123456" };
        if (n % 4 === 1)
          req.body = { type: "phone", account: mobile(n), countryCode: 86, verifyCode: "123456" };
        break;
      case "PUT <fresns>/account/reset-password":
        fresnsHeaders(req, which, n);
        req.body = {
          type: "email",
          account: live.fresnsEmail[which],
          verifyCode: "123456",
          newPassword: Buffer.from("new password 1").toString("base64"),
        };
        break;
      case "POST <fresns>/account/verify-identity":
        fresnsLogin();
        req.body = { type: "email", verifyCode: "123456" };
        break;
      case "PUT <fresns>/account/edit":
        fresnsLogin();
        req.body = { codeType: "email", verifyCode: "123456", newEmail: email(n), newVerifyCode: "654321" };
        if (n % 3 === 1) req.body = { newPhone: mobile(n), newCountryCode: 86, newVerifyCode: "654321" };
        if (n % 3 === 2)
          req.body = { codeType: "email", verifyCode: "123456", newPassword: "bmV3IHBhc3N3b3Jk" };
        break;
      case "GET <fresns>/account/detail":
        fresnsLogin();
        break;
      case "POST /auth/v1/verification":
        req.body = { email: email(n), target: n % 4 === 2 ? "NOT_USER" : "ANY" };
        if (n % 4 === 1)
          req.body = { phone_number: `+86 ${mobile(n)}`, target: "ANY", usage: "SIGN_IN", locale: "zh-CN" };
        if (n % 4 === 3) {
          // CUR_USER: the signed-in caller's own contact; the given value only picks the channel.
          req.body = { email: "c***@example.com", target: "CUR_USER", usage: "EMAIL_ADDRESS_CHANGE" };
          req.headers.authorization = `Bearer ${(await cloudbaseCredentials()).access_token}`;
        }
        if (n % 3 === 0) req.query.push(["client_id", "default"]);
        req.headers["x-device-id"] = `device-${n}`;
        break;
      case "POST /auth/v1/verification/verify":
        req.body = { verification_id: live.cbVerificationId, verification_code: "000000" };
        break;
      case "POST /auth/v1/signup":
        req.body = {
          email: email(n),
          verification_token: `vt_${"a".repeat(41)}`,
          username: `fz_${n}_user`,
          password: "correct horse",
          name: "Fuzz",
          locale: "en",
        };
        break;
      case "POST /auth/v1/signin":
        // Username and password cost an scrypt hash (~50 ms), so only every fifth request uses them.
        req.body =
          n % 5 === 0
            ? { username: "fz_cb_user", password: "wrong password" }
            : { verification_token: `vt_${"b".repeat(41)}` };
        break;
      case "POST /auth/v1/token":
        req.body = {
          grant_type: "refresh_token",
          refresh_token: (await cloudbaseCredentials()).refresh_token,
        };
        break;
      case "GET /auth/v1/user/me":
      case "POST /auth/v1/user/signout":
        req.headers.authorization = `Bearer ${(await cloudbaseCredentials()).access_token}`;
        break;
      case "POST /auth/v1/revoke": {
        const credentials = await cloudbaseCredentials();
        req.body = { token: n % 2 === 0 ? credentials.access_token : credentials.refresh_token };
        break;
      }
      case "POST /auth/v1/reset":
        req.body = {
          ...(n % 2 === 0 ? { email: email(n) } : { phone_number: `+86 ${mobile(n)}` }),
          verification_token: `vt_${"c".repeat(41)}`,
          new_password: "new password 1",
        };
        break;
      case "POST /auth/v1/user/sudo":
        req.headers.authorization = `Bearer ${(await cloudbaseCredentials()).access_token}`;
        // A password costs an scrypt hash (~50 ms), so only every fifth request uses one.
        req.body =
          n % 5 === 0 ? { password: "wrong password" } : { verification_token: `vt_${"d".repeat(41)}` };
        break;
      case "PATCH /auth/v1/user/contact":
        req.headers.authorization = `Bearer ${(await cloudbaseCredentials()).access_token}`;
        req.body = { email: email(n), verification_token: `vt_${"e".repeat(41)}`, sudo_token: "a.b.c" };
        break;
      case "PATCH /auth/v1/user/password":
        req.headers.authorization = `Bearer ${(await cloudbaseCredentials()).access_token}`;
        req.body = { new_password: "new password 1", sudo_token: "a.b.c" };
        break;
      case "POST /auth/v1/captcha/data/verify":
        req.body = { token: live.cbCaptchaToken, key: "abcd" };
        break;
      // The 2022 SDK's page flow: init, the page (a browser opens it), and the page's form.
      case "POST /auth/v1/captcha/init":
        req.body = { redirect_uri: `${ORIGINS.default}/captcha-done`, state: `s${n}` };
        if (n % 2 === 0) req.query.push(["client_id", "default"]);
        break;
      case "GET /auth/v1/captcha/page":
        req.query.push(["client_id", "default"], ["redirect_uri", enc(`${ORIGINS.default}/captcha-done`)]);
        req.headers["sec-fetch-dest"] = "document";
        break;
      case "POST /auth/v1/captcha/page":
        req.encoding = "form";
        req.body = {
          token: live.cbCaptchaToken,
          key: "abcd",
          redirect_uri: `${ORIGINS.default}/captcha-done`,
        };
        if (n % 2 === 0) req.body.client_id = "default";
        Object.assign(req.headers, { "sec-fetch-mode": "navigate", "sec-fetch-dest": "document" });
        break;
      case "GET /api/v2/sdk/captcha":
        Object.assign(req.headers, IDAAS_DEVICE);
        break;
      case "POST /api/v2/sdk/captcha/verify":
        Object.assign(req.headers, IDAAS_DEVICE);
        req.body = {
          point_json: live.idaasCaptcha.wrongPoint,
          token: live.idaasCaptcha.token,
          sender: email(n),
        };
        break;
      case "POST /api/v2/sdk/email/send":
      case "POST /api/v2/sdk/sms/send": {
        Object.assign(req.headers, IDAAS_DEVICE);
        const sms = route.path.includes("/sms/");
        // A made-up pass token here; the deep phase sends real ones.
        req.body = {
          ...(sms ? { mobile: mobile(n) } : { email: email(n) }),
          type: sms ? "REGISTER_SMS" : "REGISTER_EMS",
          captcha_token: '71dd26999e314f9abb0c635336976635---{"x":237.0,"y":5.0}',
        };
        if (n % 3 === 0) {
          // BIND_* reads the session this face issued from Authorization.
          req.body.type = sms ? "BIND_MOBILE_SMS" : "BIND_EMAIL_EMS";
          req.headers.authorization = `Bearer ${live.fresnsSession.default.token}`;
        }
        break;
      }
      case "POST /api/v2/sdk/login/email-verify-code":
        Object.assign(req.headers, IDAAS_DEVICE);
        req.body = { email: live.idaasEmail, verify_code: "123456" };
        break;
      case "POST /api/v2/sdk/login/sms-verify-code":
        Object.assign(req.headers, IDAAS_DEVICE);
        req.body = { mobile: "13900000000", verify_code: "123456" };
        break;
      case "POST /api/v2/sdk/register/email-verify-code":
      case "POST /api/v2/sdk/register/sms-verify-code": {
        Object.assign(req.headers, IDAAS_DEVICE);
        const sms = route.path.includes("/sms-");
        req.body = {
          ...(sms ? { mobile: mobile(n) } : { email: email(n) }),
          verify_code: "123456",
          pwd: "password123",
          user_name: `fz_${n}`,
          name: "Fuzz",
          extension: { plan: "free", seats: 3, beta: true, note: null },
        };
        break;
      }
      default:
        // /healthz, /readyz, /docs, captcha/data and sign-out need nothing beyond the face's headers.
        if (route.face === "idaas") Object.assign(req.headers, IDAAS_DEVICE);
        if (route.face === "fresns") fresnsHeaders(req, which, n);
    }
    if (production) {
      // Only the native API picks its app by key; the dialects pick theirs as in dev mode.
      if (route.face === "native") req.headers.authorization ??= `Bearer ${API_KEY}`;
      // Every other request comes from a page of an allowed origin, the rest from a backend.
      if (n % 2 === 0) req.headers.origin = n % 4 === 0 ? ORIGINS.default : ORIGINS.signed;
    }
    return req;
  }

  /**
   * The deep phase's seeds: requests whose code, token or captcha pass is real, so the handler runs
   * to its success path (account creation, sessions, profile storage) and the hostile values reach
   * it there. `keep` names what a mutation must not touch, or the request stops at the check again.
   */
  async function deepSeed(
    route: Route,
    n: number,
  ): Promise<{ req: Req; keep: string[]; note?: string } | null> {
    const req = await seed(route, n);
    const body = req.body ?? {};
    const which: Which = n % 2 === 0 ? "default" : "signed";
    const app = apps[which];
    const newAccount = async (contact: { email?: string; phone?: string }, target = apps.default) =>
      t.engine.accounts.create({ app: target, ...contact });
    const loggedIn = async (account: Account) => {
      const session = await t.engine.accounts.createSession(app, account, 86_400, "fresns");
      fresnsHeaders(req, which, n, { aid: account.id, token: session.token });
    };
    const FRESNS_KEEP = ["header.x-fresns-app-id", "header.x-fresns-aid", "header.x-fresns-aid-token"];
    switch (seedKey(route)) {
      case "POST /v1/verifications/check": {
        const { id, code } = await codeFor(apps.default, "email", email(n), "sign_in");
        Object.assign(body, { id, code });
        return { req, keep: ["body.id", "body.code"] };
      }
      case "POST /v1/tokens/redeem":
        body.token = await tokenFor(apps.default, "email", email(n), "sign_in");
        return { req, keep: ["body.token"] };
      case "GET /v1/verifications/:id":
      case "POST /v1/verifications/:id/cancel":
        req.params.id = (await codeFor(apps.default, "email", email(n), "sign_in")).id;
        return { req, keep: ["param.id"] };
      case "POST /v1/captcha/verify": {
        const { token, answer } = await nativeChallenge();
        Object.assign(body, { token, answer });
        // The answer is left to the mutations: a live challenge is what judges it.
        return { req, keep: ["body.token"] };
      }
      case "GET /v1/dev/captcha/:token":
        req.params.token = (await nativeChallenge()).token;
        return { req, keep: ["param.token"] };
      case "POST <fresns>/account/register":
        body.verifyCode = (await codeFor(app, "email", email(n), "sign_up")).code;
        return {
          req,
          keep: ["body.type", "body.account", "body.verifyCode", "body.password", "header.x-fresns-app-id"],
        };
      case "POST <fresns>/account/login":
        req.body = { type: "email", account: email(n) };
        await newAccount({ email: email(n) }, app);
        req.body.verifyCode = (await codeFor(app, "email", email(n), "sign_in")).code;
        return { req, keep: ["body.type", "body.account", "body.verifyCode", "header.x-fresns-app-id"] };
      case "PUT <fresns>/account/reset-password":
        body.account = email(n);
        await newAccount({ email: email(n) }, app);
        body.verifyCode = (await codeFor(app, "email", email(n), "reset_password")).code;
        return {
          req,
          keep: [
            "body.type",
            "body.account",
            "body.verifyCode",
            "body.newPassword",
            "header.x-fresns-app-id",
          ],
        };
      case "POST <fresns>/account/verify-identity": {
        const account = await newAccount({ email: email(n) }, app);
        await loggedIn(account);
        body.verifyCode = (await codeFor(app, "email", email(n), "generic")).code;
        return { req, keep: ["body.type", "body.verifyCode", ...FRESNS_KEEP] };
      }
      case "PUT <fresns>/account/edit": {
        const account = await newAccount({ email: email(n) }, app);
        await loggedIn(account);
        const next = `new-${email(n)}`;
        req.body = {
          codeType: "email",
          verifyCode: (await codeFor(app, "email", email(n), "bind_contact")).code,
          newEmail: next,
          newVerifyCode: (await codeFor(app, "email", next, "change_contact")).code,
        };
        return {
          req,
          keep: ["body.codeType", "body.verifyCode", "body.newEmail", "body.newVerifyCode", ...FRESNS_KEEP],
        };
      }
      case "POST /auth/v1/verification/verify": {
        const { id, code } = await codeFor(apps.default, "email", email(n), "sign_in");
        req.body = { verification_id: id, verification_code: code };
        return { req, keep: ["body.verification_id", "body.verification_code"] };
      }
      case "POST /auth/v1/signup":
        // No password: a successful sign-up would hash it (~50 ms); mutations may still add one.
        delete body.password;
        body.verification_token = await tokenFor(apps.default, "email", email(n), "sign_up");
        return {
          req,
          keep: ["body.email", "body.verification_token", "query.client_id", "header.x-client-id"],
        };
      case "POST /auth/v1/signin":
        // Every third account does not exist: a sign-in token for a contact without an account.
        if (n % 3 !== 0) await newAccount({ email: email(n) });
        req.body = { verification_token: await tokenFor(apps.default, "email", email(n), "sign_in") };
        return {
          req,
          keep: ["body.verification_token", "query.client_id", "header.x-client-id"],
          ...(n % 3 === 0 ? { note: "no account has the token's contact" } : {}),
        };
      case "POST /auth/v1/captcha/data/verify": {
        const { token, answer } = await cloudbaseChallenge();
        Object.assign(body, { token, key: answer });
        return { req, keep: ["body.token"] };
      }
      case "POST /api/v2/sdk/captcha/verify": {
        const { token, point } = await idaasChallenge();
        Object.assign(body, { token, point_json: point });
        return { req, keep: ["body.token", "header.x-client-id"] };
      }
      case "POST /api/v2/sdk/email/send":
      case "POST /api/v2/sdk/sms/send": {
        const sms = route.path.includes("/sms/");
        const sender = sms ? deepMobile(n) : email(n);
        body[sms ? "mobile" : "email"] = sender;
        body.type = sms ? "REGISTER_SMS" : "REGISTER_EMS";
        delete req.headers.authorization;
        body.captcha_token = await idaasPass(sender);
        return { req, keep: ["body.email", "body.mobile", "body.captcha_token", "header.x-client-id"] };
      }
      case "POST /api/v2/sdk/login/email-verify-code":
      case "POST /api/v2/sdk/register/email-verify-code": {
        const login = route.path.includes("/login/");
        req.body = login ? { email: email(n) } : { ...body, email: email(n) };
        if (login) await newAccount({ email: email(n) });
        delete req.body.pwd;
        req.body.verify_code = (
          await codeFor(apps.default, "email", email(n), login ? "sign_in" : "sign_up")
        ).code;
        return { req, keep: ["body.email", "body.verify_code", "header.x-client-id"] };
      }
      case "POST /api/v2/sdk/login/sms-verify-code":
      case "POST /api/v2/sdk/register/sms-verify-code": {
        const login = route.path.includes("/login/");
        req.body = login ? { mobile: deepMobile(n) } : { ...body, mobile: deepMobile(n) };
        if (login) await newAccount({ phone: `+86${deepMobile(n)}` });
        delete req.body.pwd;
        req.body.verify_code = (
          await codeFor(apps.default, "sms", `+86${deepMobile(n)}`, login ? "sign_in" : "sign_up")
        ).code;
        return { req, keep: ["body.mobile", "body.verify_code", "header.x-client-id"] };
      }
      default:
        return null;
    }
  }

  // --- mutations --------------------------------------------------------------------------------------

  function setField(name: string, label: string, value: FieldValue): Mutation {
    return {
      label: `body.${name} = ${label}`,
      target: `body.${name}`,
      composable: true,
      apply(req) {
        req.body ??= {};
        const current = req.body[name] ?? "x";
        const next = typeof value === "function" ? (value as (c: unknown) => unknown)(current) : value;
        // defineProperty: assigning "__proto__" would set the prototype instead of a key.
        Object.defineProperty(req.body, name, {
          value: next,
          enumerable: true,
          writable: true,
          configurable: true,
        });
      },
    };
  }

  function setHeader(
    name: string,
    label: string,
    make: (current: string | undefined) => string | null,
  ): Mutation {
    return {
      label: `header ${name}: ${label}`,
      target: `header.${name}`,
      composable: true,
      apply(req) {
        const value = make(req.headers[name]);
        if (value === null) delete req.headers[name];
        else req.headers[name] = value;
        req.locked.add(name);
        // X-Forwarded-For is believed only from the trusted proxy, so it comes from there.
        if (name === "x-forwarded-for") req.remoteAddress = PROXY_ADDRESS;
      },
    };
  }

  const wholeBody = (
    label: string,
    payload: string | Buffer | undefined,
    contentType?: string,
  ): Mutation => ({
    label,
    target: "",
    composable: false,
    apply(req) {
      req.payload = payload;
      if (payload === undefined) req.body = undefined;
      if (contentType === undefined) delete req.headers["content-type"];
      else req.headers["content-type"] = contentType;
    },
  });

  /** Applied to the request's own valid body, so the shape is right and only the framing is wrong. */
  const framed = (
    label: string,
    frame: (json: string, req: Req) => string | Buffer,
    contentType: string,
  ): Mutation => ({
    label,
    target: "",
    composable: false,
    apply(req) {
      req.payload = frame(toJson(req.body ?? {}), req);
      req.headers["content-type"] = contentType;
    },
  });

  function mutationsOf(route: Route, sampleReq: Req): { core: Mutation[]; extended: Mutation[] } {
    const core: Mutation[] = [];
    const extended: Mutation[] = [];
    const fields = [...new Set([...route.fields, ...Object.keys(sampleReq.body ?? {})])];

    if (route.hasBody || fields.length > 0) {
      const JSON_TYPE = "application/json";
      core.push(
        wholeBody("no body at all", undefined),
        wholeBody("JSON content type, empty body", "", JSON_TYPE),
        wholeBody("malformed JSON", '{"a":', JSON_TYPE),
        wholeBody("JSON array", "[]", JSON_TYPE),
        wholeBody("JSON string", '"hello"', JSON_TYPE),
        wholeBody("JSON number", "42", JSON_TYPE),
        wholeBody("JSON null", "null", JSON_TYPE),
        wholeBody("JSON true", "true", JSON_TYPE),
        wholeBody("JSON 1e309", "1e309", JSON_TYPE),
        wholeBody(
          "invalid UTF-8 bytes",
          Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d]),
          JSON_TYPE,
        ),
        wholeBody("deeply nested arrays", `${"[".repeat(5000)}${"]".repeat(5000)}`, JSON_TYPE),
        wholeBody("deeply nested objects", `${'{"a":'.repeat(2000)}1${"}".repeat(2000)}`, JSON_TYPE),
        wholeBody("body of 20 KB", toJson({ junk: "z".repeat(20 * 1024) }), JSON_TYPE),
        framed("the body as a one-element array", (json) => `[${json}]`, JSON_TYPE),
        framed("text/plain", (json) => json, "text/plain"),
        framed("form-encoded", (_json, req) => toForm(req.body ?? {}), "application/x-www-form-urlencoded"),
        framed(
          "multipart",
          (json) => `--b\r\nContent-Disposition: form-data; name="a"\r\n\r\n${json}\r\n--b--\r\n`,
          "multipart/form-data; boundary=b",
        ),
        framed("JSON with a BOM", (json) => `\ufeff${json}`, JSON_TYPE),
        framed("JSON then garbage", (json) => `${json}garbage`, JSON_TYPE),
        framed("charset utf-16", (json) => json, "application/json; charset=utf-16"),
        framed("__proto__ key", (json) => prepend(json, '"__proto__":{"polluted":"yes"}'), JSON_TYPE),
        framed(
          "constructor.prototype key",
          (json) => prepend(json, '"constructor":{"prototype":{"polluted":"yes"}}'),
          JSON_TYPE,
        ),
      );
      extended.push(
        wholeBody("only a brace", "{", JSON_TYPE),
        wholeBody("'nul'", "nul", JSON_TYPE),
        wholeBody("JSON -0", "-0", JSON_TYPE),
        wholeBody("whitespace only", " \n\t ", JSON_TYPE),
        framed("body just under 16 KiB", (json) => padJson(json, 16 * 1024 - 8), JSON_TYPE),
        framed("upper-case content type", (json) => json, "APPLICATION/JSON"),
        framed("content type with empty params", (json) => json, "application/json;;;"),
        framed("content type application/*", (json) => json, "application/*"),
        framed("vnd+json content type", (json) => json, "application/vnd.api+json"),
        framed("malformed form", () => "%zz=%&a", "application/x-www-form-urlencoded"),
        framed("duplicate keys", (json) => prepend(json, `"${fields[0] ?? "a"}":1`), JSON_TYPE),
        framed("200 unknown fields", (json) => prepend(json, manyKeys(200)), JSON_TYPE),
        {
          label: "content-encoding gzip on a plain body",
          target: "header.content-encoding",
          composable: true,
          apply(req: Req) {
            req.headers["content-encoding"] = "gzip";
          },
        },
      );
      for (const name of fields) {
        (route.required.includes(name) ? core : extended).push({
          label: `drop body.${name}`,
          target: `body.${name}`,
          composable: true,
          apply(req) {
            if (req.body) delete req.body[name];
          },
        });
        for (const [label, value, isCore] of FIELD_VALUES)
          (isCore ? core : extended).push(setField(name, label, value));
      }
      core.push(setField("unknown_field", "an unknown field", "x"));
      extended.push(setField("__proto__", "an object", { polluted: "yes" }));
    }

    for (const name of route.paramNames) {
      for (const [label, value, isCore] of PARAM_VALUES) {
        (isCore ? core : extended).push({
          label: `path :${name} = ${label}`,
          target: `param.${name}`,
          composable: true,
          apply(req) {
            req.params[name] = value;
          },
        });
      }
    }

    // A method the route does not take, with a body Fastify cannot read: answered as the unknown
    // route, in the face's shape (problem+json outside the dialects' prefixes), not as a bad body.
    core.push({
      label: "another method, with malformed JSON",
      target: "",
      composable: false,
      unknownRoute: true,
      apply(req) {
        req.method = req.method === "PATCH" ? "PUT" : "PATCH";
        req.payload = '{"a":';
        req.headers["content-type"] = "application/json";
      },
    });

    const queryNames = [
      ...new Set([
        ...route.queryNames,
        ...(FACE_QUERIES[route.face] ?? []),
        ...sampleReq.query.map(([key]) => key),
      ]),
    ];
    for (const name of queryNames) {
      const queryMutation = (label: string, isCore: boolean, edit: (req: Req, current: string) => void) =>
        (isCore ? core : extended).push({
          label: `query ${name}: ${label}`,
          target: `query.${name}`,
          composable: true,
          apply(req) {
            const current = req.query.find(([key]) => key === name)?.[1] ?? "x";
            req.query = req.query.filter(([key]) => key !== name);
            edit(req, current);
          },
        });
      queryMutation("repeated", true, (req, current) => req.query.push([name, current], [name, current]));
      queryMutation("repeated, different values", true, (req, current) =>
        req.query.push([name, current], [name, "other"]),
      );
      queryMutation("empty", true, (req) => req.query.push([name, ""]));
      queryMutation("bare key", false, (req) => req.query.push([name, null]));
      queryMutation("2000 chars", true, (req) => req.query.push([name, "q".repeat(2000)]));
      queryMutation("%00", true, (req) => req.query.push([name, "%00"]));
      queryMutation("%zz", false, (req) => req.query.push([name, "%zz"]));
      queryMutation("lone %", false, (req) => req.query.push([name, "%"]));
      queryMutation("unencoded + and space", false, (req) => req.query.push([name, "+86 138"]));
      queryMutation("[] suffix", false, (req, current) => req.query.push([`${name}[]`, current]));
      queryMutation("[a] suffix", false, (req, current) => req.query.push([`${name}[a]`, current]));
      queryMutation("emoji", false, (req) => req.query.push([name, enc("😀")]));
      queryMutation("drop", false, () => {});
    }
    const everywhere: [string, [string, string | null][], boolean][] = [
      [
        "__proto__ and constructor keys",
        [
          ["__proto__", "x"],
          ["constructor", "y"],
          ["__proto__[a]", "1"],
        ],
        true,
      ],
      ["300 unknown keys", Array.from({ length: 300 }, (_, i): [string, string] => [`k${i}`, "v"]), false],
      [
        "malformed escapes",
        [
          ["%zz", "%"],
          ["a", "%E0%A4%A"],
        ],
        false,
      ],
    ];
    for (const [label, pairs, isCore] of everywhere) {
      (isCore ? core : extended).push({
        label: `query: ${label}`,
        target: "query.*",
        composable: true,
        apply(req) {
          req.query.push(...pairs);
        },
      });
    }

    const headerNames = [
      ...new Set([
        ...route.headerNames,
        ...Object.keys(sampleReq.headers),
        ...(production ? ["origin"] : []),
      ]),
    ];
    // Production judges the API key and the Origin differently, and names a disabled app: those
    // mutations are its core. The rest, dev mode's core, runs the same code in both modes, so
    // production samples it.
    const decisive: Mutation[] = [];
    for (const name of headerNames) {
      const own = production && (name === "authorization" || name === "origin") ? decisive : core;
      for (const [label, make, isCore] of HEADER_VALUES)
        (isCore ? own : extended).push(setHeader(name, label, make));
      for (const [label, value] of HEADER_EXTRAS[name] ?? []) own.push(setHeader(name, label, () => value));
      for (const [label, value] of production ? (PRODUCTION_HEADER_EXTRAS[name] ?? []) : [])
        decisive.push(setHeader(name, label, () => value));
    }
    return production ? { core: decisive, extended: [...core, ...extended] } : { core, extended };
  }

  // --- sending -----------------------------------------------------------------------------------------

  /** Signatures are made over the mutated request, so it passes them and reaches the handler. */
  function finalize(req: Req, payload: string | Buffer | undefined): void {
    // A preflight carries no credentials: the browser sends it before the request it asks about.
    if (req.method === "OPTIONS") return;
    if (req.fresnsSigned) {
      if (!req.locked.has("x-fresns-signature-timestamp"))
        req.headers["x-fresns-signature-timestamp"] = String(t.clock.nowMs());
      if (!req.locked.has("x-fresns-signature")) {
        const signed: Partial<Record<SignedHeaderName, string>> = {};
        for (const name of SIGNED_HEADERS) {
          const value = req.headers[name.toLowerCase()]?.trim();
          if (value) signed[name] = value;
        }
        req.headers["x-fresns-signature"] = fresnsSignature(signed, FRESNS_SECRET);
      }
    }
    if (req.path === "/v1/callbacks/:provider") {
      const text = payload === undefined ? "" : payload.toString();
      if (req.params.provider === "twilio" && !req.locked.has("x-twilio-signature"))
        req.headers["x-twilio-signature"] = twilioSignature(
          TWILIO_TOKEN,
          TWILIO_CALLBACK_URL,
          new URLSearchParams(text),
        );
      if (req.params.provider === "gateway" && !req.locked.has("x-verifyd-signature"))
        req.headers["x-verifyd-signature"] = signWebhookPayload(
          WEBHOOK_SECRET,
          Math.floor(callbackServer.clock.nowMs() / 1000),
          text,
        );
    }
  }

  function build(req: Req): InjectOptions {
    let payload: string | Buffer | undefined = req.payload;
    if (payload === undefined && req.body !== undefined) {
      payload = req.encoding === "form" ? toForm(req.body) : toJson(req.body);
      req.headers["content-type"] ??=
        req.encoding === "form" ? "application/x-www-form-urlencoded" : "application/json";
    }
    finalize(req, payload);
    const path = req.path.replace(
      /:(\w+)|\*/g,
      (_match, name: string | undefined) => req.params[name ?? "*"] ?? "",
    );
    const query = req.query.map(([key, value]) => (value === null ? key : `${key}=${value}`)).join("&");
    return {
      method: req.method as InjectOptions["method"],
      url: query ? `${path}?${query}` : path,
      headers: req.headers,
      remoteAddress: req.remoteAddress,
      ...(payload === undefined ? {} : { payload }),
    };
  }

  /** Record counts a refusal must leave as they were: no new records, no code spent, no token redeemed. */
  async function snapshot(server: FuzzedServer): Promise<Record<string, number>> {
    const counts: Record<string, number> = {};
    if (!("stores" in server)) {
      const { db } = server.server.backend;
      const count = (sql: string) => (db.prepare(sql).get() as { n: number }).n;
      for (const [table] of RECORDS) counts[table] = count(`SELECT count(*) AS n FROM ${table}`);
      counts["codes approved"] = count("SELECT count(*) AS n FROM codes WHERE status = 'approved'");
      return counts;
    }
    const { postgres, redis, redisPrefix } = server.stores;
    const tables = RECORDS.filter(([, where]) => where === "postgres").map(([table]) => table);
    const kinds = RECORDS.flatMap(([, where]) => (where === "postgres" ? [] : where));
    const [rows, keys] = await Promise.all([
      postgres.query<Record<string, number>>(
        `SELECT ${tables.map((table) => `(SELECT count(*)::int FROM ${table}) AS ${table}`).join(", ")}`,
      ),
      redisKeyCounts(redis, redisPrefix, kinds),
    ]);
    for (const [name, where] of RECORDS)
      counts[name] =
        where === "postgres"
          ? (rows.rows[0]?.[name] ?? 0)
          : where.reduce((sum, kind) => sum + (keys[kind] ?? 0), 0);
    // A check approves a code in place: its status letter (redis-code-codec.ts) turns to `a`.
    counts["codes approved"] = keys["code:a"] ?? 0;
    return counts;
  }

  function halfWrites(before: Record<string, number>, after: Record<string, number>): string[] {
    const changes: string[] = [];
    for (const [key, value] of Object.entries(after)) {
      const was = before[key] ?? 0;
      if (value > was) changes.push(key === "codes approved" ? "spent a code" : `added a row to ${key}`);
      // Tokens are deleted when redeemed.
      if (key === "tokens" && value < was) changes.push("redeemed a token");
    }
    return changes;
  }

  const clip = (text: string, max = 400) =>
    text.length > max ? `${text.slice(0, max)}… (${text.length} chars)` : text;

  function describeRequest(options: InjectOptions): string {
    const headers = Object.entries((options.headers ?? {}) as Record<string, string>)
      .map(([name, value]) => `${name}: ${clip(String(value), 120)}`)
      .join("; ");
    const payload = options.payload === undefined ? "" : ` body=${clip(String(options.payload), 300)}`;
    return `${options.method} ${clip(String(options.url), 300)} [${headers}] from ${options.remoteAddress}${payload}`;
  }

  /** A refusal in its face's shape: a 4xx, or for Fresns an HTTP 200 with a non-zero code. */
  function refused(route: Route, status: number, parsed: unknown): boolean {
    if (status >= 400) return true;
    return route.face === "fresns" && (parsed as { code?: unknown } | undefined)?.code !== 0;
  }

  /** Sends one request (the route's seed, or `prepared`) with `mutation` applied, and judges the answer. */
  async function fire(route: Route, mutation: Mutation[], prepared?: Req, context = ""): Promise<void> {
    requestNumber += 1;
    const n = requestNumber;
    const req = prepared ?? (await seed(route, n));
    for (const step of mutation) step.apply(req);
    const options = build(req);
    const what = mutation.map((step) => step.label).join(" + ") || "unmutated";
    const label = context ? `${context}: ${what}` : what === "unmutated" ? "seed (unmutated)" : what;
    const routeName = `${route.method} ${route.path}`;
    const stat = stats.get(routeName) ?? { sent: 0, s2xx: 0, s3xx: 0, s4xx: 0, fresnsOk: 0, seed: "" };
    stats.set(routeName, stat);
    stat.sent += 1;

    const server = route.face === "callbacks" ? callbackServer : t;
    const before = await snapshot(server);
    const logged = unexpected.length;
    const fail = (status: number | string, body: string, problem: string) =>
      failures.push({
        route: routeName,
        mutation: label,
        request: describeRequest(options),
        status,
        body: clip(body),
        problem,
      });

    let timer: NodeJS.Timeout | undefined;
    let reply: LightMyRequestResponse;
    try {
      reply = await Promise.race([
        server.fastify.inject(options),
        new Promise<never>((_resolve, reject) => {
          timer = setTimeout(
            () => reject(new Error(`no answer in ${REQUEST_TIMEOUT_MS} ms`)),
            REQUEST_TIMEOUT_MS,
          );
        }),
      ]);
    } catch (error) {
      fail("no answer", "", `hang or inject error: ${String(error)}`);
      return;
    } finally {
      clearTimeout(timer);
    }

    const status = reply.statusCode;
    if (status < 300) stat.s2xx += 1;
    else if (status < 400) stat.s3xx += 1;
    else if (status < 500) stat.s4xx += 1;

    let parsed: unknown;
    const contentType = String(reply.headers["content-type"] ?? "");
    if (/json/i.test(contentType) && req.method !== "HEAD") {
      try {
        parsed = JSON.parse(reply.body);
      } catch {
        fail(status, reply.body, `content-type ${contentType} but the body is not JSON`);
      }
    }
    const fresnsCode = (parsed as { code?: unknown } | undefined)?.code;
    if (route.face === "fresns" && fresnsCode === 0) stat.fresnsOk += 1;
    if (mutation.length === 0 && !prepared)
      stat.seed = `${status}${route.face === "fresns" && req.method !== "HEAD" ? `/${String(fresnsCode)}` : ""}`;
    if (status >= 500) fail(status, reply.body, "5xx answer");
    // A refusal comes in the caller's API shape: its face's own, or for an unknown path the native
    // problem+json that answers unknown routes outside CloudBase's prefix. That holds for an OPTIONS
    // too: one not answered as a preflight reaches the face's unknown-route answer; and for the
    // routes of no face (health, docs), which answer problem+json like the native API.
    const face = faceOf(String(options.url).split("?")[0] ?? "");
    if (status >= 400 && req.method !== "HEAD") {
      if (parsed === undefined) fail(status, reply.body, `a ${status} without a JSON body`);
      else if (!inCallersShape(face, status, contentType, parsed))
        fail(status, reply.body, `a ${status} not in the ${face} face's shape`);
    }
    // Regression: Fresns answered PATCH /api/v2/common/send-verify-code with a body not JSON as
    // that route's bad body (200, code 30000), which the shape check above let pass.
    if (
      mutation.some((step) => step.unknownRoute) &&
      !server.fastify.hasRoute({ method: req.method as HTTPMethods, url: route.path }) &&
      !unknownRouteAnswer(face, status, parsed)
    )
      fail(status, reply.body, `not the ${face} face's unknown-route answer`);
    if (production) {
      // A CORS grant lets another site's page read the answer: only ever to the requesting origin,
      // and only if an app allows it.
      const granted = reply.headers["access-control-allow-origin"];
      const origin = req.headers.origin;
      if (granted !== undefined && (granted !== origin || !ALLOWED_ORIGINS.has(origin)))
        fail(
          status,
          reply.body,
          `CORS allowed origin ${String(granted)} to a request from ${String(origin)}`,
        );
      // Absent, its paths are refused (404, or 400 for a path the router cannot decode); a preflight
      // is answered for any path, so it shows nothing.
      if (route.face === "dev" && req.method !== "OPTIONS" && status < 400)
        fail(status, reply.body, "the dev API answered in production");
    }
    for (const entry of unexpected.slice(logged))
      fail(status, reply.body, `logged "unexpected error": ${entry.error}`);
    if (refused(route, status, parsed)) {
      const changes = halfWrites(before, await snapshot(server));
      if (changes.length > 0) fail(status, reply.body, `refused, yet ${changes.join(", ")} (half-written)`);
    }
  }

  it("records what the renderers log as unexpected (self-check of the capture)", async () => {
    const { logUnexpected } = await import("./problem.js");
    const request = { method: "GET", url: "/probe", id: "probe", log: { error() {} } };
    logUnexpected(request as unknown as FastifyRequest, new Error("probe"));
    expect(unexpected.pop()).toMatchObject({ url: "/probe", error: expect.stringContaining("probe") });
  });

  it("answers every mutated request with a 4xx in the face's shape, never a 5xx, hang or half-write", async () => {
    const started = Date.now();
    const document = t.fastify.swagger() as { paths: Record<string, Record<string, OpenApiOperation>> };
    const routes: Route[] = [];
    for (const [path, operations] of Object.entries(document.paths)) {
      for (const [method, operation] of Object.entries(operations)) {
        routes.push(routeOf(method.toUpperCase(), path.replace(/\{(\w+)\}/g, ":$1"), operation));
      }
    }
    // Routes hidden from OpenAPI (`schema.hide`, the docs UI itself): listed by hand.
    routes.push(
      routeOf("POST", "/v1/callbacks/:provider"),
      ...["/docs", "/docs/", "/docs/json", "/docs/yaml", "/docs/static/index.html"].map((path) =>
        routeOf("GET", path),
      ),
      routeOf("GET", "/docs/static/swagger-initializer.js"),
      routeOf("GET", "/docs/*"),
    );
    const known = new Set(routes.map((route) => `${route.method} ${route.path}`));
    const served = servedRoutes(t.fastify.printRoutes({ commonPrefix: false }));
    // Guards the parse of the printed tree: an empty listing would make the next check vacuous.
    expect(served).toContainEqual({ method: "POST", path: "/v1/callbacks/:provider" });
    const unfuzzed = served
      .map(({ method, path }) => `${method} ${path}`)
      .filter((route) => !known.has(route));
    expect(unfuzzed, "routes the app serves that the fuzzer does not know").toEqual([]);
    const devRoutes = served.filter(({ path }) => faceOf(path) === "dev");
    if (production) {
      expect(devRoutes, "the dev API is not served in production").toEqual([]);
      // Fuzzed all the same: whatever a request to them carries, it is refused.
      routes.push(routeOf("GET", "/v1/dev/inbox"), routeOf("GET", "/v1/dev/captcha/:token"));
    } else {
      // Shows the filter finds them where they exist, so the production check above is not vacuous.
      expect(devRoutes, "the dev API in dev mode").toHaveLength(2);
    }

    // Phase 1: every route from its seed, one mutation at a time, then a few stacked at random.
    const mutations = new Map<Route, Mutation[]>();
    for (const route of routes) {
      const first = await seed(route, 0);
      const { core, extended } = mutationsOf(route, first);
      mutations.set(route, [...core, ...extended]);
      const kept = pass.sampleCore ? sample(core, pass.cap) : core;
      const chosen = [...kept, ...sample(extended, Math.max(0, pass.cap - kept.length))];
      await fire(route, []);
      for (const mutation of chosen) await fire(route, [mutation]);
      // Requests wrong in several places at once catch handlers that assume one fault.
      const composable = [...core, ...extended].filter((mutation) => mutation.composable);
      for (let i = 0; i < pass.combos && composable.length > 1; i += 1) {
        const count = 2 + Math.floor(random() * 3);
        await fire(
          route,
          Array.from({ length: count }, () => pick(composable)),
        );
      }
      // HEAD is served for every GET by the same handler.
      if (route.method === "GET") await fire({ ...route, method: "HEAD" }, []);
      if (production) {
        const asked = {
          method: route.method,
          headers: ["content-type", ...Object.keys(first.headers)].join(", "),
        };
        for (const preflight of preflights(asked)) await fire({ ...route, method: "OPTIONS" }, [preflight]);
      }
    }

    // Phase 2: real codes, tokens and passes, so hostile values reach the success paths. Per route:
    // the deep seed as is (it shows the seed succeeds), the previous request's optional fields again
    // with fresh credentials (a conflict must be refused before anything is spent), then each optional
    // body field once with a hostile string and once with a random value, then random others.
    for (const route of routes) {
      let previous: Req | undefined;
      const plan: ("seed" | "same as previous" | Mutation[])[] = ["seed", "same as previous"];
      for (let step = 0; step < plan.length; step += 1) {
        requestNumber += 1;
        const deep = await deepSeed(route, requestNumber);
        if (!deep) break;
        if (step === 0) {
          const all = mutations.get(route) ?? [];
          const open = (mutation: Mutation) => mutation.composable && !deep.keep.includes(mutation.target);
          const fields = Object.keys(deep.req.body ?? {}).concat(route.fields);
          for (const field of new Set(fields)) {
            if (deep.keep.includes(`body.${field}`)) continue;
            plan.push([setField(field, ...pick(DEEP_STRINGS))]);
            const random = all.filter((mutation) => open(mutation) && mutation.target === `body.${field}`);
            if (random.length > 0) plan.push([pick(random)]);
          }
          const others = all.filter((mutation) => open(mutation) && !mutation.target.startsWith("body."));
          for (let i = 0; i < pass.deep && others.length > 0; i += 1) plan.push([pick(others)]);
        }
        const entry = plan[step];
        if (entry === "same as previous" && previous?.body && deep.req.body) {
          for (const [key, value] of Object.entries(previous.body))
            if (!deep.keep.includes(`body.${key}`)) deep.req.body[key] = value;
        }
        previous = deep.req;
        const context = `deep${deep.note ? ` (${deep.note})` : ""}`;
        await fire(
          route,
          Array.isArray(entry) ? entry : [],
          deep.req,
          entry === "same as previous" ? `${context}, the previous request's optional fields again` : context,
        );
      }
    }

    const health = await t.fastify.inject({ method: "GET", url: "/healthz" });
    const elapsed = Date.now() - started;
    const table = [...stats.entries()]
      .map(
        ([name, s]) =>
          `${String(s.sent).padStart(5)}  2xx ${String(s.s2xx).padStart(4)}  3xx ${String(s.s3xx).padStart(3)}  4xx ${String(s.s4xx).padStart(4)}  Fresns ok ${String(s.fresnsOk).padStart(3)}  seed ${s.seed.padEnd(9)}  ${name}`,
      )
      .join("\n");
    // What each route got, for whoever tunes the generator (FUZZ_VERBOSE=1).
    if (process.env.FUZZ_VERBOSE) {
      console.info(
        `fuzz seed ${SEED}, ${pass.title}: ${requestNumber} requests over ${stats.size} routes in ${elapsed} ms\n${table}`,
      );
    }

    expect(health.statusCode, "GET /healthz after the run").toBe(200);
    // No JSON body may have reached an object's prototype.
    expect(({} as Record<string, unknown>).polluted, "Object.prototype polluted").toBeUndefined();
    // One line per kind of failure (route and problem), then the failures, one of each kind first,
    // so a noisy kind cannot hide the others from the first MAX_LISTED_FAILURES.
    const kinds = new Map<string, Failure[]>();
    for (const failure of failures) {
      const kind = `${failure.route} — ${failure.problem.split("\n")[0]}`;
      kinds.set(kind, [...(kinds.get(kind) ?? []), failure]);
    }
    const summary = [...kinds]
      .map(([kind, list]) => `  ${String(list.length).padStart(4)} × ${kind}`)
      .join("\n");
    const ordered = [...kinds.values()].flatMap((list) => list.slice(0, 1));
    ordered.push(...failures.filter((failure) => !ordered.includes(failure)));
    const listed = ordered
      .slice(0, MAX_LISTED_FAILURES)
      .map(
        (f, i) =>
          `#${i + 1} ${f.route} — ${f.mutation}\n  problem: ${f.problem}\n  status: ${f.status}\n  body: ${f.body}\n  request: ${f.request}`,
      )
      .join("\n\n");
    expect(
      failures.length,
      `${failures.length} failures of ${kinds.size} kinds (FUZZ_SEED=${SEED}, ${pass.title}):\n${summary}\n\n${listed}`,
    ).toBe(0);
  }, 120_000);
});

if (!redisProbe.ok || !postgresProbe.ok)
  backendMissing(
    `bad-input fuzzer over every route (dev and production mode, ${CLUSTER_TITLE})`,
    missingReason(redisProbe, postgresProbe),
  );

interface RouteStats {
  sent: number;
  s2xx: number;
  s3xx: number;
  s4xx: number;
  /** Fresns answers with HTTP 200 either way: code 0 is its success */
  fresnsOk: number;
  seed: string;
}

/** An Authorization header of Basic credentials of these bytes (`user:password`). */
function basicCredentials(bytes: Buffer): string {
  return `Basic ${bytes.toString("base64")}`;
}

/** Pads a JSON object with a junk field until its text is `size` characters long. */
function padJson(json: string, size: number): string {
  const filler = Math.max(0, size - json.length - 12);
  return prepend(json, `"pad":"${"p".repeat(filler)}"`);
}

function manyKeys(count: number): string {
  return Array.from({ length: count }, (_, i) => `"unknown_${i}":${i}`).join(",");
}

/** Puts `members` first in a JSON object's text, whether or not the object is empty. */
function prepend(json: string, members: string): string {
  return json === "{}" ? `{${members}}` : json.replace(/^\{/, `{${members},`);
}
