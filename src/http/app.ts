import cors from "@fastify/cors";
import swagger from "@fastify/swagger";
import swaggerUi from "@fastify/swagger-ui";
import Fastify, { type FastifyBaseLogger, type FastifyInstance, LogController } from "fastify";
import type { Engine } from "../core/engine.js";
import type { DevInbox } from "../core/ports.js";
import { devApi } from "./dev/routes.js";
import { nativeApi } from "./native/routes.js";

export interface HttpAppOptions {
  engine: Engine;
  logger: FastifyBaseLogger;
  devMode: boolean;
  devInbox: DevInbox;
  defaultCountry: string;
  /** proxies whose X-Forwarded-For is believed (VERIFYD_TRUST_PROXY) */
  trustProxy: string[];
  /** true when every backend answers (`/readyz`) */
  ready: () => Promise<boolean>;
}

// DESIGN.md: every body over 16 KiB is refused before it is parsed.
const BODY_LIMIT_BYTES = 16 * 1024;
// Origins change rarely; re-reading the apps on every preflight would put the store on that path.
const CORS_CACHE_MS = 5_000;

/** Builds the HTTP app: hooks, CORS, OpenAPI at /docs, health, and one plugin per API face. */
export async function buildHttpApp(options: HttpAppOptions): Promise<FastifyInstance> {
  const { engine, devMode } = options;
  const fastify = Fastify({
    loggerInstance: options.logger,
    // Outcomes are logged by the use cases; two lines per request would cost more than the request.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: BODY_LIMIT_BYTES,
    trustProxy: options.trustProxy.length > 0 ? options.trustProxy : false,
    requestIdHeader: "x-request-id",
    return503OnClosing: true,
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, allErrors: false } },
  });

  let origins: { set: Set<string>; atMs: number } = { set: new Set(), atMs: 0 };
  await fastify.register(cors, {
    origin: (origin, callback) => {
      if (devMode || origin === undefined) return callback(null, true);
      const now = Date.now();
      if (now - origins.atMs < CORS_CACHE_MS) return callback(null, origins.set.has(origin));
      engine.apps.list().then(
        (apps) => {
          origins = { set: new Set(apps.flatMap((app) => app.corsOrigins)), atMs: now };
          callback(null, origins.set.has(origin));
        },
        (error: unknown) => callback(error as Error, false),
      );
    },
    allowedHeaders: ["authorization", "content-type", "idempotency-key", "x-captcha-token", "x-request-id"],
    exposedHeaders: ["retry-after", "x-request-id"],
    maxAge: 600,
  });

  await fastify.register(swagger, {
    openapi: {
      info: {
        title: "verifyd",
        version: "0.1.0",
        description: "One-time verification codes by email and SMS",
      },
      components: { securitySchemes: { apiKey: { type: "http", scheme: "bearer" } } },
      security: [{ apiKey: [] }],
    },
  });
  await fastify.register(swaggerUi, { routePrefix: "/docs" });

  fastify.get("/healthz", async () => ({ status: "ok" }));
  fastify.get("/readyz", async (_request, reply) => {
    const ready = await options.ready().catch(() => false);
    reply.code(ready ? 200 : 503);
    return { status: ready ? "ready" : "unavailable" };
  });

  await fastify.register(nativeApi, { engine, devMode });
  if (devMode) {
    await fastify.register(devApi, {
      inbox: options.devInbox,
      captcha: engine.captcha,
      defaultCountry: options.defaultCountry,
    });
  }
  return fastify;
}
