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
});
