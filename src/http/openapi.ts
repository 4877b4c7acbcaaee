import type { FastifySchema, RouteOptions } from "fastify";
import Type from "typebox";

/**
 * What `/docs` says beyond the route schemas, which are written for validation: the headers a
 * face reads by hand, the content type of the native refusals, and which routes take no API key.
 * A swagger `transform`, so it shapes the document only; requests are judged as before.
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

const NATIVE_SEND_HEADERS = Type.Object({
  "idempotency-key": Type.Optional(
    Type.String({ description: "a retry under the same key gets the first answer (24 h)" }),
  ),
  "x-captcha-token": Type.Optional(
    Type.String({
      description: "a captcha pass (or a third-party widget's token) for a send that needs one",
    }),
  ),
});

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
} as const;

interface Transformed {
  schema: FastifySchema;
  url: string;
}

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
  const native = url.startsWith("/v1/") && !url.startsWith("/v1/dev/");
  // The API key is the native API's alone (the global requirement). The published APIs' faces
  // take none: anonymous calls, or a session of their own where a route needs a signed-in user.
  if (!native) doc.security = sessionSecurity(url);
  if (url.startsWith("/api/v2/sdk/")) doc.headers = IDAAS_HEADERS;
  if (EMPTY_REPLY_ROUTES.has(url)) doc.response = { 200: EMPTY_200, ...(schema.response as object) };
  if (url === "/v1/verifications" && route.method === "POST") doc.headers = NATIVE_SEND_HEADERS;
  if (native && schema.response) doc.response = problemResponses(schema.response as Record<string, unknown>);
  return { schema: doc, url };
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

/** The native API's refusals as served: `application/problem+json`, a 500 among them. */
function problemResponses(responses: Record<string, unknown>): Record<string, unknown> {
  const documented: Record<string, unknown> = {};
  let problem: unknown;
  for (const [status, response] of Object.entries(responses)) {
    if (Number(status) >= 400) {
      problem = response;
      documented[status] = { content: { "application/problem+json": { schema: response } } };
    } else documented[status] = response;
  }
  if (problem && !documented["500"]) {
    documented["500"] = {
      description: "INTERNAL: a fault of the server's; the detail names the request id to report",
      content: { "application/problem+json": { schema: problem } },
    };
  }
  return documented;
}
