import { Ajv, type ValidateFunction } from "ajv";
import addFormats from "ajv-formats";
import type { LightMyRequestResponse } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestServer, type TestServer } from "../../test/harness.js";
import { OTP_ERROR_CODES } from "../core/errors.js";
import { NATIVE_ERROR_STATUS } from "./native/error-map.js";
import { NATIVE_REFUSALS } from "./native/refusals.js";

// What `/docs/json` tells client generators, checked against itself and against real answers, so
// that a route, a status or a field added without its documentation fails here.

interface Header {
  schema: { type?: string };
}
interface Response {
  description: string;
  headers?: Record<string, Header>;
  content?: Record<string, { schema: Record<string, unknown> }>;
}
interface Operation {
  operationId?: string;
  tags?: string[];
  summary?: string;
  parameters?: { in: string; name: string; schema: Record<string, unknown> }[];
  requestBody?: {
    content: Record<string, { schema: { properties: Record<string, Record<string, unknown>> } }>;
  };
  responses: Record<string, Response>;
}
interface Spec {
  paths: Record<string, Record<string, Operation>>;
}

const FACES = ["native", "dev", "fresns", "cloudbase", "idaas", "operations"];
const NATIVE_PATHS = [
  ["post", "/v1/verifications", "sendVerification"],
  ["post", "/v1/captcha", "createCaptcha"],
  ["post", "/v1/captcha/verify", "solveCaptcha"],
  ["post", "/v1/verifications/check", "checkVerification"],
  ["get", "/v1/verifications/{id}", "getVerification"],
  ["post", "/v1/verifications/{id}/cancel", "cancelVerification"],
  ["post", "/v1/tokens/redeem", "redeemToken"],
] as const;

let t: TestServer;
let spec: Spec;
const operations = () =>
  Object.entries(spec.paths).flatMap(([path, methods]) =>
    Object.entries(methods).map(([method, operation]) => ({ path, method, operation })),
  );

beforeAll(async () => {
  t = await createTestServer();
  const docs = await t.fastify.inject({ method: "GET", url: "/docs/json" });
  if (process.env.DUMP_DOCS) (await import("node:fs")).writeFileSync(process.env.DUMP_DOCS, docs.body);
  spec = docs.json();
});
afterAll(async () => {
  await t.close();
});

describe("the OpenAPI document", () => {
  it("names every operation once and tags it with its face", () => {
    const ids = operations().map(({ operation }) => operation.operationId);
    expect(ids.every((id) => typeof id === "string" && id.length > 0)).toBe(true);
    expect(new Set(ids).size).toBe(ids.length);
    for (const { path, method, operation } of operations()) {
      expect(operation.tags, `${method} ${path}`).toHaveLength(1);
      expect(FACES, `${method} ${path}`).toContain(operation.tags?.[0]);
    }
    for (const [method, path, operationId] of NATIVE_PATHS) {
      const operation = spec.paths[path]?.[method] as Operation;
      expect(operation).toMatchObject({ operationId, tags: ["native"] });
      expect(operation.summary).toMatch(/\S/);
    }
  });

  it("documents x-request-id on every response and Retry-After on every 428 and 429", () => {
    for (const { path, method, operation } of operations()) {
      for (const [status, response] of Object.entries(operation.responses)) {
        const where = `${method} ${path} ${status}`;
        expect(response.headers?.["x-request-id"]?.schema.type, where).toBe("string");
        if (status === "428" || status === "429") {
          expect(response.headers?.["Retry-After"]?.schema.type, where).toBe("integer");
        }
      }
    }
  });

  it("lists each native route's refusal statuses, derived from the codes it can answer", () => {
    for (const [method, path, operationId] of NATIVE_PATHS) {
      const { responses } = spec.paths[path]?.[method] ?? { responses: {} };
      const codes = NATIVE_REFUSALS[operationId];
      const statuses = new Set<number>([...codes.map((code) => NATIVE_ERROR_STATUS[code]), 500]);
      const refusals = Object.keys(responses).filter((status) => Number(status) >= 400);
      expect(refusals.map(Number).sort(), operationId).toEqual([...statuses].sort());
      for (const status of refusals) {
        const response = responses[status] as Response;
        expect(response.description, `${operationId} ${status}`).not.toBe("Default Response");
        expect(Object.keys(response.content ?? {})).toEqual(["application/problem+json"]);
        for (const code of codes.filter((code) => NATIVE_ERROR_STATUS[code] === Number(status))) {
          expect(response.description, `${operationId} ${status}`).toContain(code);
        }
      }
    }
    // Only a send meets no 404 and no 410, and only a check a 422: no route claims every status.
    expect(Object.keys(spec.paths["/v1/verifications"]?.post?.responses ?? {})).not.toContain("410");
    expect(Object.keys(spec.paths["/v1/verifications/{id}"]?.get?.responses ?? {})).not.toContain("413");
  });

  it("gives the problem's code as the error registry's, and the 500 its request_id", () => {
    const send = spec.paths["/v1/verifications"]?.post as Operation;
    const problem = send.responses["400"]?.content?.["application/problem+json"]?.schema as {
      properties: Record<string, { type?: string; enum?: string[] }>;
    };
    expect(problem.properties.code?.type).toBe("string");
    expect([...(problem.properties.code?.enum ?? [])].sort()).toEqual(Object.keys(OTP_ERROR_CODES).sort());
    const internal = send.responses["500"] as Response;
    const schema = internal.content?.["application/problem+json"]?.schema as {
      properties: Record<string, { enum?: string[] }>;
    };
    expect(schema.properties.code?.enum).toEqual(["INTERNAL", "TEMPLATE_MISSING"]);
    expect(schema.properties).toHaveProperty("request_id");
    expect(internal.description).toMatch(/request_id/);
    expect(internal.description).toMatch(/TEMPLATE_MISSING/);
  });

  it("types every enum, and says what the send's hand-checked inputs accept", () => {
    const untyped: string[] = [];
    const walk = (value: unknown, at: string) => {
      if (typeof value !== "object" || value === null) return;
      const node = value as Record<string, unknown>;
      if (Array.isArray(node.enum) && node.type === undefined) untyped.push(at);
      for (const [key, item] of Object.entries(node)) walk(item, `${at}.${key}`);
    };
    walk(spec.paths, "paths");
    expect(untyped).toEqual([]);
    const send = spec.paths["/v1/verifications"]?.post as Operation;
    const header = (name: string) => send.parameters?.find((p) => p.in === "header" && p.name === name);
    expect(header("idempotency-key")?.schema).toMatchObject({ minLength: 1, maxLength: 255 });
    expect(header("accept-language")).toBeDefined();
    const body = send.requestBody?.content["application/json"]?.schema.properties;
    expect(body?.client_ip?.anyOf).toEqual([{ format: "ipv4" }, { format: "ipv6" }]);
    const reply = send.responses["201"]?.content?.["application/json"]?.schema as {
      properties: Record<string, { enum?: string[] }>;
    };
    expect(reply.properties.channel?.enum).toEqual(["email", "sms"]);
  });

  it("documents the Fresns envelope and the CloudBase captcha page", () => {
    const login = spec.paths["/api/v2/account/login"]?.post as Operation;
    const envelope = login.responses["200"]?.content?.["application/json"]?.schema as {
      properties: Record<string, unknown>;
    };
    expect(Object.keys(envelope.properties)).toEqual(["code", "message", "data"]);
    expect(login.responses["500"]).toBeDefined();
    const page = spec.paths["/auth/v1/captcha/page"]?.get as Operation;
    expect(Object.keys(page.responses["200"]?.content ?? {})).toEqual(["text/html"]);
    expect(Object.keys(page.responses["400"]?.content ?? {})).toEqual(["application/json"]);
  });
});

describe("serving the document", () => {
  // Regression: swagger-ui serialized the ~180 KB document on every request (~1.4 ms of the
  // request thread), for anyone, with nothing to cache it by.
  it("serves /docs/json and /docs/yaml as made once, with an ETag a client can revalidate by", async () => {
    for (const url of ["/docs/json", "/docs/yaml"]) {
      const first = await t.fastify.inject({ method: "GET", url });
      const second = await t.fastify.inject({ method: "GET", url });
      expect(first.statusCode, url).toBe(200);
      expect(second.body, url).toBe(first.body);
      expect(first.headers.etag, url).toMatch(/^"[\w-]{22}"$/);
      expect(second.headers.etag, url).toBe(first.headers.etag);
      expect(first.headers["cache-control"], url).toBe("public, max-age=300");
      const revalidated = await t.fastify.inject({
        method: "GET",
        url,
        headers: { "if-none-match": String(first.headers.etag) },
      });
      expect(revalidated.statusCode, url).toBe(304);
      expect(revalidated.body, url).toBe("");
      // as proxies send it: weak, in a list
      for (const ifNoneMatch of [`W/${first.headers.etag}`, `"other", ${first.headers.etag}`, "*"]) {
        const again = await t.fastify.inject({
          method: "GET",
          url,
          headers: { "if-none-match": ifNoneMatch },
        });
        expect(again.statusCode, `${url} ${ifNoneMatch}`).toBe(304);
      }
      const stale = await t.fastify.inject({ method: "GET", url, headers: { "if-none-match": '"other"' } });
      expect(stale.statusCode, url).toBe(200);
    }
    const json = await t.fastify.inject({ method: "GET", url: "/docs/json" });
    expect(json.headers["content-type"]).toBe("application/json; charset=utf-8");
    expect(JSON.parse(json.body)).toEqual(spec);
    const yaml = await t.fastify.inject({ method: "GET", url: "/docs/yaml" });
    expect(yaml.headers["content-type"]).toMatch(/^application\/x-yaml/);
    expect(yaml.body).toMatch(/^openapi: 3\./);
  });

  it("documents the operational routes' answers as served", async () => {
    const bodyOf = (path: string, status: string) =>
      spec.paths[path]?.get?.responses[status]?.content?.["application/json"]?.schema;
    expect(bodyOf("/healthz", "200")).toMatchObject({ properties: { status: { enum: ["ok"] } } });
    expect(bodyOf("/readyz", "200")).toMatchObject({ properties: { status: { enum: ["ready"] } } });
    expect(bodyOf("/readyz", "503")).toMatchObject({ properties: { status: { enum: ["unavailable"] } } });
    expect((await t.fastify.inject({ method: "GET", url: "/healthz" })).json()).toEqual({ status: "ok" });
    expect((await t.fastify.inject({ method: "GET", url: "/readyz" })).json()).toEqual({ status: "ready" });
    const metrics = spec.paths["/metrics"]?.get as Operation & { security: unknown };
    expect(metrics.responses["200"]?.content).toHaveProperty(["text/plain"]);
    expect(metrics.security).toEqual([{}, { metricsToken: [] }]);
    expect(metrics.responses["401"]?.content).toHaveProperty(["application/problem+json"]);
  });

  // DESIGN.md: dev mode accepts unauthenticated calls for the app `default`; production does not.
  it("says the API key may be left out in dev mode, and not in production", async () => {
    expect((spec as unknown as { security: unknown }).security).toEqual([{}, { apiKey: [] }]);
    const production = await createTestServer({
      env: { VERIFYD_MODE: "production", VERIFYD_SECRET: "openapi-test-secret-0123456789abcdef" },
    });
    try {
      const docs = (await production.fastify.inject({ method: "GET", url: "/docs/json" })).json();
      expect(docs.security).toEqual([{ apiKey: [] }]);
    } finally {
      await production.close();
    }
  });
});

describe("real answers, against what the document says of them", () => {
  const ajv = new Ajv({ strict: false, allErrors: true });
  addFormats.default(ajv);
  const compiled = new Map<object, ValidateFunction>();

  /** Finds the documented response of an answer and checks the answer against it. */
  function expectDocumented(method: string, path: string, reply: LightMyRequestResponse) {
    const template = Object.keys(spec.paths).find((documented) =>
      new RegExp(`^${documented.replace(/\{[^}]+\}/g, "[^/]+")}$`).test(path.split("?")[0] as string),
    );
    const where = `${method} ${path} -> ${reply.statusCode} ${reply.body.slice(0, 200)}`;
    expect(template, where).toBeDefined();
    const response =
      spec.paths[template as string]?.[method.toLowerCase()]?.responses[String(reply.statusCode)];
    expect(response, `${where}: status not documented`).toBeDefined();
    const documented = response as Response;
    for (const name of ["x-request-id", "retry-after"]) {
      if (reply.headers[name] === undefined) continue;
      const names = Object.keys(documented.headers ?? {}).map((header) => header.toLowerCase());
      expect(names, `${where}: ${name} sent but not documented`).toContain(name);
    }
    const type = String(reply.headers["content-type"] ?? "").split(";")[0] as string;
    const media = documented.content?.[type];
    expect(media, `${where}: ${type} not documented`).toBeDefined();
    const schema = media?.schema as Record<string, unknown>;
    let validate = compiled.get(schema);
    if (!validate) {
      validate = ajv.compile(schema);
      compiled.set(schema, validate);
    }
    const body = reply.json();
    expect(validate(body), `${where}: ${ajv.errorsText(validate.errors)}`).toBe(true);
    const known = Object.keys((schema.properties as object | undefined) ?? {});
    expect(
      Object.keys(body).filter((field) => !known.includes(field)),
      `${where}: undocumented fields`,
    ).toEqual([]);
    return body;
  }

  async function call(method: "GET" | "POST", url: string, payload?: unknown, headers = {}) {
    const reply = await t.fastify.inject({
      method,
      url,
      headers,
      ...(payload === undefined ? {} : { payload: payload as object }),
    });
    return { reply, body: expectDocumented(method, url, reply) };
  }

  it("the native routes' answers and refusals", async () => {
    const sent = await call("POST", "/v1/verifications", {
      channel: "email",
      to: "ann@example.com",
      purpose: "sign_in",
    });
    expect(sent.reply.statusCode).toBe(201);
    const id = sent.body.id as string;
    // 429 with Retry-After
    const again = await call("POST", "/v1/verifications", {
      channel: "email",
      to: "ann@example.com",
      purpose: "sign_in",
    });
    expect(again.reply.statusCode).toBe(429);
    expect(again.reply.headers["retry-after"]).toBeDefined();
    expect(
      (await call("POST", "/v1/verifications", { channel: "fax", purpose: "sign_in" })).reply.statusCode,
    ).toBe(400);
    expect(
      (
        await call(
          "POST",
          "/v1/verifications",
          { channel: "email", purpose: "sign_in" },
          { authorization: "Bearer nope" },
        )
      ).reply.statusCode,
    ).toBe(401);
    expect(
      (
        await call("POST", "/v1/verifications", {
          channel: "email",
          to: "a@example.com",
          purpose: "sign_in",
          target: "user",
        })
      ).reply.statusCode,
    ).toBe(409);
    expect(
      (await call("POST", "/v1/verifications", { channel: "email", to: "x".repeat(17 * 1024) })).reply
        .statusCode,
    ).toBe(413);
    // The risk rules ask the next sends from this address for a captcha: 428, with Retry-After.
    let captchaAsked: LightMyRequestResponse | undefined;
    for (let n = 0; n < 5 && !captchaAsked; n++) {
      const { reply } = await call("POST", "/v1/verifications", {
        channel: "email",
        to: `user${n}@example.com`,
        purpose: "sign_in",
      });
      if (reply.statusCode === 428) captchaAsked = reply;
    }
    expect(captchaAsked?.headers["retry-after"]).toBeDefined();

    await t.deliverAll();
    const viewed = await call("GET", `/v1/verifications/${id}`);
    expect(viewed.reply.statusCode).toBe(200);
    expect((viewed.body.deliveries as unknown[]).length).toBeGreaterThan(0);
    expect((await call("GET", "/v1/verifications/vf_unknown")).reply.statusCode).toBe(404);

    expect((await call("POST", "/v1/verifications/check", { id, code: "12" })).reply.statusCode).toBe(400);
    const code = t.email.lastCodeFor("ann@example.com") as string;
    const wrong = code === "000000" ? "111111" : "000000";
    expect((await call("POST", "/v1/verifications/check", { id, code: wrong })).reply.statusCode).toBe(422);
    const checked = await call("POST", "/v1/verifications/check", { id, code });
    expect(checked.reply.statusCode).toBe(200);
    expect((await call("POST", "/v1/verifications/check", { id, code })).reply.statusCode).toBe(410);
    const token = checked.body.token as string;
    expect((await call("POST", "/v1/tokens/redeem", { token })).reply.statusCode).toBe(200);
    expect((await call("POST", "/v1/tokens/redeem", { token })).reply.statusCode).toBe(404);
    expect((await call("POST", `/v1/verifications/${id}/cancel`)).reply.statusCode).toBe(410);

    const captcha = await call("POST", "/v1/captcha", { type: "slider" });
    expect(captcha.reply.statusCode).toBe(200);
    const solved = await call("POST", "/v1/captcha/verify", { token: captcha.body.token, answer: "nope" });
    expect(solved.reply.statusCode).toBe(400);
  });

  it("a 500 of a missing template", async () => {
    const other = await createTestServer({
      apps: [
        { id: "default", templates: { sign_up: { fr: { subject: "{app}", text: "Votre code {code}" } } } },
      ],
    });
    try {
      const stored = await other.engine.apps.stored("default");
      await other.engine.apps.save({ ...stored!, defaultLocale: "fr" });
      const reply = await other.fastify.inject({
        method: "POST",
        url: "/v1/verifications",
        payload: { channel: "email", to: "ann@example.com", purpose: "sign_in", locale: "fr" },
      });
      expect(reply.statusCode).toBe(500);
      expect(expectDocumented("POST", "/v1/verifications", reply)).toMatchObject({
        code: "TEMPLATE_MISSING",
      });
    } finally {
      await other.close();
    }
  });

  it("the Fresns envelope and the CloudBase captcha page", async () => {
    const login = await call("POST", "/api/v2/account/login", {});
    expect(login.reply.statusCode).toBe(200);
    const page = await t.fastify.inject({
      method: "GET",
      url: "/auth/v1/captcha/page?redirect_uri=ftp%3A%2F%2Fexample.com%2F",
    });
    expect(page.statusCode).toBe(400);
    expectDocumented("GET", "/auth/v1/captcha/page", page);
  });
});
