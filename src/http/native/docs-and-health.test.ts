import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestServer, type TestServer } from "../../../test/harness.js";

let t: TestServer;
beforeAll(async () => {
  t = await createTestServer();
});
afterAll(async () => {
  await t.close();
});

describe("health", () => {
  it("GET /healthz answers 200 with a tiny JSON body", async () => {
    const reply = await t.fastify.inject({ method: "GET", url: "/healthz" });
    expect(reply.statusCode).toBe(200);
    expect(reply.headers["content-type"]).toMatch(/^application\/json/);
    expect(reply.json()).toEqual({ status: "ok" });
  });

  it("GET /readyz answers 200 when the store answers", async () => {
    const reply = await t.fastify.inject({ method: "GET", url: "/readyz" });
    expect(reply.statusCode).toBe(200);
    expect(reply.headers["content-type"]).toMatch(/^application\/json/);
    expect(reply.json()).toEqual({ status: "ready" });
  });
});

describe("OpenAPI at /docs", () => {
  it("serves the UI", async () => {
    const reply = await t.fastify.inject({ method: "GET", url: "/docs" });
    expect(reply.statusCode).toBe(200);
    expect(reply.headers["content-type"]).toMatch(/^text\/html/);
  });

  it("lists every native route with its method", async () => {
    const reply = await t.fastify.inject({ method: "GET", url: "/docs/json" });
    expect(reply.statusCode).toBe(200);
    const spec = reply.json();
    expect(spec.openapi).toMatch(/^3\./);
    const paths = spec.paths as Record<string, Record<string, unknown>>;
    const routes = Object.entries(paths).flatMap(([path, methods]) =>
      Object.keys(methods).map((method) => `${method.toUpperCase()} ${path}`),
    );
    expect(routes).toEqual(
      expect.arrayContaining([
        "POST /v1/verifications",
        "POST /v1/verifications/check",
        "GET /v1/verifications/{id}",
        "POST /v1/verifications/{id}/cancel",
        "POST /v1/tokens/redeem",
      ]),
    );
  });

  it("documents the send body's fields and the problem+json refusals", async () => {
    const spec = (await t.fastify.inject({ method: "GET", url: "/docs/json" })).json();
    const send = spec.paths["/v1/verifications"].post;
    const schema = send.requestBody.content["application/json"].schema;
    expect(Object.keys(schema.properties)).toEqual(
      expect.arrayContaining([
        "channel",
        "to",
        "purpose",
        "locale",
        "country",
        "target",
        "account_id",
        "client_ip",
        "device_id",
      ]),
    );
    expect(schema.required).toEqual(expect.arrayContaining(["channel", "purpose"]));
    expect(Object.keys(send.responses)).toEqual(expect.arrayContaining(["201", "400", "401", "409", "429"]));
    expect(spec.components.securitySchemes).toMatchObject({ apiKey: { type: "http", scheme: "bearer" } });
  });

  // Regression: one global security requirement marked every face and /healthz as needing the
  // native API key; the IDaaS headers, the native send's headers and IDaaS send's 200 were missing,
  // and the native refusals were documented as application/json. @see observe review 6
  it("documents what a client needs that the route schemas leave out", async () => {
    const spec = (await t.fastify.inject({ method: "GET", url: "/docs/json" })).json();
    interface Operation {
      security?: unknown[];
      parameters: { in: string; name: string; required?: boolean }[];
      responses: Record<string, { description?: string; content: Record<string, unknown> }>;
    }
    const paths = spec.paths as Record<string, Record<string, Operation>>;
    const operation = (path: string, method: string) => paths[path]?.[method] as Operation;
    expect(operation("/healthz", "get").security).toEqual([]);
    // @see fix review 2 (7): a route only a signed-in user may call does not say "or none"
    expect(operation("/auth/v1/user/me", "get").security).toEqual([{ sessionBearer: [] }]);
    expect(operation("/auth/v1/verification", "post").security).toEqual([{}, { sessionBearer: [] }]);
    expect(operation("/api/v2/sdk/pwd/update-by-mobile", "post").security).toEqual([
      {},
      { sessionBearer: [] },
    ]);
    expect(operation("/api/v2/sdk/profile/update-email", "post").security).toEqual([{ sessionBearer: [] }]);
    expect(Object.keys(operation("/api/v2/sdk/profile/update-mobile", "post").responses)).toContain("200");
    expect(operation("/api/v2/account/detail", "get").security).toEqual([{ fresnsAidToken: [] }]);
    expect(operation("/api/v2/account/login", "post").security).toEqual([{}, { fresnsAidToken: [] }]);
    expect(operation("/v1/verifications", "post").security).toBeUndefined(); // the global API key
    const idaasHeaders = operation("/api/v2/sdk/email/send", "post")
      .parameters.filter((parameter: { in: string }) => parameter.in === "header")
      .map(
        (parameter: { name: string; required?: boolean }) =>
          `${parameter.name}${parameter.required ? "" : "?"}`,
      );
    expect(idaasHeaders).toEqual(
      expect.arrayContaining([
        "x-client-id",
        "x-device-fingerprint",
        "x-agent",
        "x-operating-sys-version",
        "x-l?",
      ]),
    );
    for (const path of ["/api/v2/sdk/email/send", "/api/v2/sdk/pwd/update-by-mobile"]) {
      const done = operation(path, "post").responses["200"];
      expect(done?.description).toBe("done: 200 with no body");
      expect(done?.content).toBeUndefined();
    }
    const send = operation("/v1/verifications", "post");
    const sendHeaders = send.parameters
      .filter((parameter) => parameter.in === "header")
      .map((parameter) => parameter.name);
    expect(sendHeaders).toEqual(expect.arrayContaining(["idempotency-key", "x-captcha-token"]));
    const contentTypes = (status: string) => Object.keys(send.responses[status]?.content ?? {});
    expect(contentTypes("429")).toEqual(["application/problem+json"]);
    expect(contentTypes("500")).toEqual(["application/problem+json"]);
    expect(contentTypes("201")).toEqual(["application/json"]);
  });
});
