import Fastify from "fastify";
import { afterEach, describe, expect, it } from "vitest";
import { createTestServer, type TestServer } from "../../test/harness.js";
import { installCors } from "./cors.js";

// The preflights of the apps' pages are in native.test.ts ("CORS"); this file holds what a page's
// real request gets, what a server's request without Origin gets, and the origins' cache.

const SHOP = "https://shop.example";
const production = () =>
  createTestServer({
    env: { VERIFYD_MODE: "production", VERIFYD_SECRET: "production-secret-0123456789" },
    apps: [{ id: "shop", apiKeys: ["vk_test_shop_0123456789abcdef"], corsOrigins: [SHOP] }],
  });
const send = (t: TestServer, headers: Record<string, string>, to = "ann@example.com") =>
  t.fastify.inject({
    method: "POST",
    url: "/v1/verifications",
    payload: { channel: "email", to, purpose: "sign_in" },
    headers: { authorization: "Bearer vk_test_shop_0123456789abcdef", ...headers },
  });

describe("CORS on the apps' requests", () => {
  let t: TestServer | undefined;
  afterEach(async () => {
    await t?.close();
    t = undefined;
  });

  it("grants an app's origin on its real request, with the headers a page may read", async () => {
    t = await production();
    const reply = await send(t, { origin: SHOP });
    expect(reply.statusCode, reply.body).toBe(201);
    expect(reply.headers["access-control-allow-origin"]).toBe(SHOP);
    expect(reply.headers["access-control-expose-headers"]).toBe("retry-after, x-request-id");
    expect(reply.headers.vary).toBe("Origin");
  });

  it("grants no other origin, and still answers the request (the browser withholds it)", async () => {
    t = await production();
    const reply = await send(t, { origin: "https://evil.example" });
    expect(reply.statusCode, reply.body).toBe(201);
    expect(reply.headers["access-control-allow-origin"]).toBeUndefined();
    expect(reply.headers["access-control-expose-headers"]).toBeUndefined();
    expect(reply.headers.vary).toBe("Origin");
  });

  it("adds only Vary to a request without Origin (a server's call), or with an empty one", async () => {
    t = await production();
    for (const [to, headers] of [
      ["ann@example.com", {}],
      ["bob@example.com", { origin: "" }],
    ] as const) {
      const reply = await send(t, headers, to);
      expect(reply.statusCode, reply.body).toBe(201);
      expect(reply.headers["access-control-allow-origin"]).toBeUndefined();
      expect(reply.headers["access-control-expose-headers"]).toBeUndefined();
      expect(reply.headers.vary).toBe("Origin");
    }
  });

  it("reflects no empty Origin in dev mode either", async () => {
    t = await createTestServer();
    const reply = await t.fastify.inject({ method: "GET", url: "/healthz", headers: { origin: "" } });
    expect(reply.headers["access-control-allow-origin"]).toBeUndefined();
  });

  it("answers a refused origin's preflight as an unknown route, in each face's shape", async () => {
    t = await production();
    const preflight = (url: string) =>
      t!.fastify.inject({
        method: "OPTIONS",
        url,
        headers: { origin: "https://evil.example", "access-control-request-method": "POST" },
      });
    const native = await preflight("/v1/verifications");
    expect(native.statusCode).toBe(404);
    expect(native.headers["content-type"]).toMatch(/^application\/problem\+json/);
    expect(native.json().code).toBe("ROUTE_NOT_FOUND");
    const cloudbase = await preflight("/auth/v1/verification");
    expect(cloudbase.statusCode).toBe(404);
    expect(cloudbase.json().error).toBe("not_found");
    const fresns = await preflight("/api/v2/common/send-verify-code");
    expect(fresns.json().code).toBe(404);
    // IDaaS refuses a request without its device headers before routing it
    const idaas = await preflight("/api/v2/sdk/email/send");
    expect(idaas.json().error_code).toMatch(/^IDAAS\./);
    for (const reply of [native, cloudbase, fresns, idaas]) {
      expect(reply.statusCode).toBeGreaterThanOrEqual(400);
      expect(reply.headers["access-control-allow-origin"]).toBeUndefined();
      expect(reply.headers["access-control-allow-methods"]).toBeUndefined();
    }
  });
});

describe("installCors", () => {
  const serve = (origins: Set<string>[], clock: { ms: number }) => {
    const fastify = Fastify();
    let loads = 0;
    installCors(fastify, {
      anyOrigin: false,
      loadOrigins: async () => origins[Math.min(loads++, origins.length - 1)] as Set<string>,
      cacheMs: 5_000,
      now: () => clock.ms,
    });
    fastify.get("/", async () => "ok");
    const granted = async (origin: string) =>
      (await fastify.inject({ url: "/", headers: { origin } })).headers["access-control-allow-origin"];
    return { granted, loads: () => loads };
  };

  it("loads the origins once per cacheMs, and grants an origin added after the next load", async () => {
    const clock = { ms: 1_000_000 };
    const server = serve([new Set([SHOP]), new Set([SHOP, "https://new.example"])], clock);
    expect(await server.granted(SHOP)).toBe(SHOP);
    expect(await server.granted("https://new.example")).toBeUndefined();
    clock.ms += 4_999;
    expect(await server.granted("https://new.example")).toBeUndefined();
    expect(server.loads()).toBe(1);
    clock.ms += 1;
    expect(await server.granted("https://new.example")).toBe("https://new.example");
    expect(server.loads()).toBe(2);
  });

  it("never loads the origins for a request without Origin", async () => {
    const fastify = Fastify();
    let loads = 0;
    installCors(fastify, {
      anyOrigin: false,
      loadOrigins: async () => {
        loads++;
        return new Set();
      },
      cacheMs: 5_000,
    });
    fastify.get("/", async () => "ok");
    expect((await fastify.inject({ url: "/" })).statusCode).toBe(200);
    expect(loads).toBe(0);
  });
});
