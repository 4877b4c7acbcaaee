import { createHash } from "node:crypto";
import type {} from "@fastify/swagger";
import type { FastifyInstance, FastifySchema, onRequestHookHandler, RouteOptions } from "fastify";
import Type from "typebox";
import type { OtpErrorCode } from "../core/errors.js";
import { CLOUDBASE_ERRORS } from "./dialects/cloudbase/error-map.js";
import { FresnsBugReply, FresnsReply } from "./dialects/fresns/schemas.js";
import { IDAAS_ERROR_MAP, IDAAS_ERRORS } from "./dialects/idaas/error-map.js";
import {
  describeRefusals,
  NATIVE_REFUSALS,
  type NativeOperation,
  refusalsByStatus,
} from "./native/refusals.js";
import { InternalProblem, Problem } from "./native/schemas.js";

/**
 * What `/docs` says beyond the route schemas, which are written for validation: the headers a
 * face reads by hand, the headers every answer carries, each route's tag and operationId, the
 * native refusals as served (status by status, from the codes each route can answer), the Fresns
 * envelope, and which routes take no API key. A swagger `transform`, so it shapes the document
 * only; requests are judged, and answers written, as before.
 */

const IDAAS_HEADERS = Type.Object({
  "x-client-id": Type.String({ description: "the app's client id" }),
  "x-device-fingerprint": Type.String({ description: "the caller's device fingerprint" }),
  "x-agent": Type.String({ description: "the caller's user agent" }),
  "x-operating-sys-version": Type.String({ description: "the caller's operating system version" }),
  "x-device-ip": Type.Optional(
    Type.String({ description: "the end user's address, believed only from a trusted proxy" }),
  ),
  "x-l": Type.Optional(Type.String({ description: "language of the messages: zh or en" })),
});

// The send reads its headers by hand; these say what it accepts.
const NATIVE_SEND_HEADERS = Type.Object({
  "idempotency-key": Type.Optional(
    Type.String({
      minLength: 1,
      maxLength: 255,
      pattern: "^[\\x21-\\x7e]+$",
      description:
        "1-255 printable ASCII characters; a retry under the same key gets the first answer (24 h)",
    }),
  ),
  "x-captcha-token": Type.Optional(
    Type.String({
      description:
        "a captcha pass for a send that needs one; for an app with a third-party widget (`abuse.external`), that widget's token, as it takes no pass",
    }),
  ),
  "accept-language": Type.Optional(
    Type.String({ description: "the message's language when the body names no `locale` (its first tag)" }),
  ),
});

// Checked by hand (`clientIpOf`): the validating schema bounds only its length.
const CLIENT_IP = {
  type: "string",
  anyOf: [{ format: "ipv4" }, { format: "ipv6" }],
  description: "an IPv4 or IPv6 address; believed only from an API-key caller",
};

const EMPTY_200 = { type: "null", description: "done: 200 with no body" };
// IDaaS answers these with 200 and no body at all.
const EMPTY_REPLY_ROUTES = new Set([
  "/api/v2/sdk/email/send",
  "/api/v2/sdk/sms/send",
  "/api/v2/sdk/pwd/update-by-email",
  "/api/v2/sdk/pwd/update-by-mobile",
  "/api/v2/sdk/profile/update-email",
  "/api/v2/sdk/profile/update-mobile",
]);

// Every answer carries its request id.
const REQUEST_ID = {
  "x-request-id": {
    type: "string",
    description: "this request's id: the caller's own x-request-id when it sent a usable one",
  },
};
const RETRY_AFTER = {
  "Retry-After": {
    type: "integer",
    minimum: 0,
    description: "seconds to wait before trying again; sent when the refusal says how long",
  },
};
// The codes whose refusals can name a wait (`details.retryAfterSeconds`, which every face sends as
// Retry-After): the rate limits, the captcha a risk rule asks for, a worn-out code, a destination
// denied under a limit, and a backend or captcha vendor that does not answer.
const WAIT_CODES: ReadonlySet<OtpErrorCode> = new Set<OtpErrorCode>([
  "RATE_LIMITED",
  "RESEND_TOO_SOON",
  "TOO_MANY_ATTEMPTS",
  "ACCOUNT_LOCKED",
  "CAPTCHA_REQUIRED",
  "PUMPING_DENIED",
  "CAPTCHA_UNAVAILABLE",
  "STORE_UNAVAILABLE",
]);

/** The statuses a face answers the codes that can name a wait with, by its error map. */
const waitStatuses = (statusOf: (code: OtpErrorCode) => number): ReadonlySet<number> =>
  new Set([...WAIT_CODES].map(statusOf));
const CLOUDBASE_WAIT_STATUSES = waitStatuses((code) => CLOUDBASE_ERRORS[code].status);
const IDAAS_WAIT_STATUSES = waitStatuses((code) => IDAAS_ERRORS[IDAAS_ERROR_MAP[code]].status);

/** The security schemes `/docs` names: the native API key, and the sessions the faces issue. */
export const SECURITY_SCHEMES = {
  apiKey: { type: "http", scheme: "bearer", description: "the native API's app API key" },
  sessionBearer: {
    type: "http",
    scheme: "bearer",
    description: "a signed-in call: CloudBase's access token, IDaaS's session_token or id_token",
  },
  fresnsAidToken: {
    type: "apiKey",
    in: "header",
    name: "X-Fresns-Aid-Token",
    description: "a signed-in Fresns call, with X-Fresns-Aid",
  },
  metricsToken: {
    type: "http",
    scheme: "bearer",
    description: "VERIFYD_METRICS_TOKEN, which `GET /metrics` asks for where it is set",
  },
} as const;

type Face = "native" | "dev" | "fresns" | "cloudbase" | "idaas" | "operations";

/** The API face a route belongs to, by its prefix: its tag in `/docs`. */
function faceOf(url: string): Face {
  if (url.startsWith("/v1/dev/")) return "dev";
  if (url.startsWith("/v1/")) return "native";
  if (url.startsWith("/auth/v1/")) return "cloudbase";
  if (url.startsWith("/api/v2/sdk/")) return "idaas";
  if (url.startsWith("/api/v2/") || url.startsWith("/fresns-api/")) return "fresns";
  return "operations";
}

interface Transformed {
  schema: FastifySchema;
  url: string;
}

type Responses = Record<string, Record<string, unknown>>;

export function documentRoute({
  schema,
  url,
  route,
}: {
  schema: FastifySchema;
  url: string;
  route: RouteOptions;
}): Transformed {
  const doc: FastifySchema & Record<string, unknown> = { ...schema };
  const face = faceOf(url);
  const method = String(route.method);
  doc.tags = [face];
  doc.operationId ??= operationIdOf(method, url);
  // The API key is the native API's alone (the global requirement). The published APIs' faces
  // take none: anonymous calls, or a session of their own where a route needs a signed-in user.
  if (url === "/metrics") doc.security = [{}, { metricsToken: [] }];
  else if (face !== "native") doc.security = sessionSecurity(url);
  if (face === "idaas") doc.headers = IDAAS_HEADERS;
  const responses: Responses = EMPTY_REPLY_ROUTES.has(url)
    ? { 200: EMPTY_200, ...(schema?.response as Responses) }
    : ((schema?.response ?? {}) as Responses);
  if (face === "native") {
    const refusals = NATIVE_REFUSALS[doc.operationId as NativeOperation] as
      | readonly OtpErrorCode[]
      | undefined;
    if (refusals) doc.response = nativeResponses(responses, refusals);
    if (url === "/v1/verifications" && method === "POST") doc.headers = NATIVE_SEND_HEADERS;
    const body = doc.body as { properties?: Record<string, unknown> } | undefined;
    if (body?.properties?.client_ip) {
      doc.body = { ...body, properties: { ...body.properties, client_ip: CLIENT_IP } };
    }
  } else if (face === "fresns") {
    // A Fresns refusal is a 200 in the envelope too; only a bug answers otherwise.
    doc.response = {
      200: {
        ...FresnsReply,
        description: "the answer, or a refusal (`code` not 0)",
        headers: { ...REQUEST_ID, ...RETRY_AFTER },
      },
      500: { ...FresnsBugReply, description: "a fault of the server's", headers: REQUEST_ID },
    };
  } else if (face === "operations") {
    doc.response = withHeaders(OPERATIONS_RESPONSES[url] ?? responses, () => false);
  } else {
    const waits =
      face === "cloudbase" ? CLOUDBASE_WAIT_STATUSES : face === "idaas" ? IDAAS_WAIT_STATUSES : null;
    doc.response = withHeaders(responses, (status) => waits?.has(status) ?? false);
  }
  return { schema: withTypedEnums(doc) as FastifySchema, url };
}

const statusBody = (values: string[], description: string) => ({
  description,
  content: {
    "application/json": {
      schema: {
        type: "object",
        properties: { status: { type: "string", enum: values } },
        required: ["status"],
        additionalProperties: false,
      },
    },
  },
});

// The operational routes, as served (documented here only: their replies are not serialized by a
// schema, so `/healthz`, the benchmarks' baseline, stays as cheap as it is).
const OPERATIONS_RESPONSES: Record<string, Responses> = {
  "/healthz": { 200: statusBody(["ok"], "the process is up") },
  "/readyz": {
    200: statusBody(["ready"], "every backend answers"),
    503: statusBody(["unavailable"], "a backend does not answer"),
  },
  "/metrics": {
    200: {
      description: "Prometheus's text format",
      content: { "text/plain": { schema: { type: "string" } } },
    },
    401: {
      description: "UNAUTHENTICATED: a token other than VERIFYD_METRICS_TOKEN, or none, where it is set",
      content: { "application/problem+json": { schema: Problem } },
    },
    404: {
      description: "ROUTE_NOT_FOUND: production without VERIFYD_METRICS_TOKEN",
      content: { "application/problem+json": { schema: Problem } },
    },
  },
};

/** `postAuthV1Verification` for `POST /auth/v1/verification`: unique, as method and path are. */
function operationIdOf(method: string, url: string): string {
  const words = url
    .replace(/\{(\w+)\}|:(\w+)/g, "by-$1$2")
    .split(/[^A-Za-z0-9]+/)
    .filter(Boolean);
  return [method.toLowerCase(), ...words.map((word) => `${word[0]?.toUpperCase()}${word.slice(1)}`)].join("");
}

/** Every response with `x-request-id`, and `Retry-After` where `waits` says a refusal can carry it. */
function withHeaders(responses: Responses, waits: (status: number) => boolean): Responses {
  const documented: Responses = {};
  for (const [status, response] of Object.entries(responses)) {
    const headers = { ...REQUEST_ID, ...(waits(Number(status)) ? RETRY_AFTER : {}) };
    documented[status] = { ...response, headers };
  }
  // A route without response schemas still answers with its request id; its body stays undescribed
  // (`type: "null"` is how @fastify/swagger leaves a response without content).
  if (Object.keys(documented).length === 0) {
    documented["200"] = { type: "null", description: "Default Response", headers: REQUEST_ID };
  }
  return documented;
}

/**
 * The native responses as served: each status the route's codes map to (NATIVE_ERROR_STATUS),
 * naming those codes, as `application/problem+json`; and a 500, which a bug can answer anywhere.
 */
function nativeResponses(responses: Responses, codes: readonly OtpErrorCode[]): Responses {
  const documented: Responses = {};
  for (const [status, response] of Object.entries(responses)) {
    if (Number(status) < 400) documented[status] = { ...response, headers: REQUEST_ID };
  }
  const byStatus = refusalsByStatus(codes);
  for (const [status, carried] of byStatus) {
    if (status === 500) continue;
    const waits = carried.some((code) => WAIT_CODES.has(code));
    documented[status] = {
      description: describeRefusals(status, carried),
      headers: { ...REQUEST_ID, ...(waits ? RETRY_AFTER : {}) },
      content: { "application/problem+json": { schema: Problem } },
    };
  }
  const internal = byStatus.get(500) ?? [];
  documented["500"] = {
    description: `${describeRefusals(500, internal)}${internal.length > 0 ? "; " : ""}INTERNAL: a fault of the server's, with a fixed \`detail\` and the \`request_id\` to quote when reporting it`,
    headers: REQUEST_ID,
    content: { "application/problem+json": { schema: InternalProblem(internal) } },
  };
  return documented;
}

/**
 * `{enum}` without a `type` (TypeBox's `Type.Enum` and the Fresns rule tables, kept in the request
 * schemas so that a refusal is worded as before) says its type in `/docs`: strings, or integers.
 */
function withTypedEnums(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withTypedEnums);
  if (typeof value !== "object" || value === null) return value;
  const copy: Record<string, unknown> = {};
  for (const [key, item] of Object.entries(value)) copy[key] = withTypedEnums(item);
  const values = copy.enum;
  if (Array.isArray(values) && copy.type === undefined) {
    if (values.every((item) => typeof item === "string")) copy.type = "string";
    else if (values.every(Number.isInteger)) copy.type = "integer";
  }
  return copy;
}

// The routes of the published APIs that answer only a signed-in user (the others take one where
// a send or a change concerns the caller's own account, and none otherwise).
const SIGNED_IN_ONLY =
  /^(?:\/auth\/v1\/user\/(?:me|signout|sudo|contact|password)|\/(?:api\/v2|fresns-api\/v1)\/(?:account\/(?:verify-identity|edit|detail|apply-delete|recall-delete|logout)|user\/auth)|\/api\/v2\/sdk\/profile\/update-(?:email|mobile))$/;

/** The face's own session: required, optional (`{}` allows none), or none at all. */
function sessionSecurity(url: string): Record<string, string[]>[] {
  const session: Record<string, string[]> | undefined =
    url.startsWith("/auth/v1/") || url.startsWith("/api/v2/sdk/")
      ? { sessionBearer: [] }
      : url.startsWith("/api/v2/") || url.startsWith("/fresns-api/")
        ? { fresnsAidToken: [] }
        : undefined;
  if (!session) return [];
  return SIGNED_IN_ONLY.test(url) ? [session] : [{}, session];
}

/**
 * `uiHooks` for @fastify/swagger-ui: `/docs/json` and `/docs/yaml` are serialized once, when first
 * asked for, and served with an ETag. swagger-ui would stringify the ~180 KB document on every
 * request (~1.4 ms of the request thread), and anyone may ask for it without a key. (The first
 * request of a process still pays for it: ~60 ms for the JSON, ~180 ms for the YAML.)
 */
export function documentServedOnce(fastify: FastifyInstance): { onRequest: onRequestHookHandler } {
  const made = new Map<string, { body: string; etag: string; type: string }>();
  const make = (yaml: boolean) => {
    const body = yaml ? fastify.swagger({ yaml: true }) : JSON.stringify(fastify.swagger());
    const etag = `"${createHash("sha256").update(body).digest("base64url").slice(0, 22)}"`;
    return { body, etag, type: yaml ? "application/x-yaml" : "application/json; charset=utf-8" };
  };
  return {
    onRequest(request, reply, done) {
      const path = request.url.split("?", 1)[0] ?? "";
      const yaml = path === "/docs/yaml";
      if (!yaml && path !== "/docs/json") return done();
      let document = made.get(path);
      if (!document) {
        document = make(yaml);
        made.set(path, document);
      }
      reply.header("etag", document.etag).header("cache-control", "public, max-age=300");
      if (matchesEtag(request.headers["if-none-match"], document.etag)) reply.code(304).send();
      else reply.type(document.type).send(document.body);
    },
  };
}

/** `If-None-Match` by RFC 9110's weak comparison: a list of tags, each perhaps `W/`, or `*`. */
function matchesEtag(ifNoneMatch: string | undefined, etag: string): boolean {
  if (ifNoneMatch === undefined) return false;
  return ifNoneMatch.split(",").some((tag) => {
    const trimmed = tag.trim();
    return trimmed === "*" || (trimmed.startsWith("W/") ? trimmed.slice(2) : trimmed) === etag;
  });
}
