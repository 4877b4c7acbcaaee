import swagger from "@fastify/swagger";
import swaggerUi from "@fastify/swagger-ui";
import Fastify, { type FastifyBaseLogger, type FastifyInstance, LogController } from "fastify";
import type { Engine } from "../core/engine.js";
import { invalidField, OtpError } from "../core/errors.js";
import type { DevInbox } from "../core/ports.js";
import { createLogThrottle } from "../observability/log-throttle.js";
import {
  bearerMatches,
  countingRefusals,
  type LabeledCounts,
  type Metrics,
} from "../observability/metrics.js";
import { createRefusalTally } from "../observability/refusal-tally.js";
import { createRequestIds } from "../observability/request-id.js";
import { type DeliveryCallbacksOptions, deliveryCallbacks } from "./callbacks/routes.js";
import { answerClientErrors, faceOfPath, type PathFace } from "./client-errors.js";
import { guardConnections } from "./connection-guard.js";
import { installCors } from "./cors.js";
import { devApi } from "./dev/routes.js";
import { renderCloudbaseError } from "./dialects/cloudbase/error-map.js";
import { cloudbaseDialect } from "./dialects/cloudbase/routes.js";
import { fresnsDialect, renderFresnsError } from "./dialects/fresns/routes.js";
import { idaasDialect, renderIdaasError } from "./dialects/idaas/routes.js";
import { nativeApi, renderProblem } from "./native/routes.js";
import { documentRoute, documentServedOnce, SECURITY_SCHEMES } from "./openapi.js";
import { answerErrorsWith } from "./problem.js";
import { countRefusal, tellBackendFault } from "./shared/answered-errors.js";
import { strictJsonParser } from "./shared/body-parsers.js";
import { writeRepliesTogether } from "./shared/replies-together.js";
import { forwardedClientReader, trustedPeers } from "./shared/trusted-peers.js";

export interface HttpAppOptions {
  engine: Engine;
  logger: FastifyBaseLogger;
  devMode: boolean;
  devInbox: DevInbox;
  defaultCountry: string;
  /** proxies whose X-Forwarded-For is believed (VERIFYD_TRUST_PROXY) */
  trustProxy: string[];
  /** email domains the Fresns face refuses as disposable (34110) */
  disposableEmailDomains: readonly string[];
  /** true when every backend answers (`/readyz`) */
  ready: () => Promise<boolean>;
  /** how long a request may take to arrive, headers and body (default REQUEST_TIMEOUT_MS) */
  requestTimeoutMs?: number;
  /** providers' delivery status callbacks (`POST /v1/callbacks/{provider}`) */
  callbacks?: DeliveryCallbacksOptions;
  /**
   * the backend's failures that reach a handler untranslated (`Backend.storeFault`): answered as
   * STORE_UNAVAILABLE, a 503 in the face's shape, rather than as a bug
   */
  storeFault?: ((error: unknown) => OtpError | undefined) | undefined;
  /**
   * subscribes to the moments the store has answered a group of requests at once
   * (`Backend.onAnswered`): the replies those answers made are written then
   */
  onStoreAnswered?: ((listener: () => void) => void) | undefined;
  /** how often the tally of refused requests is logged (default a minute; tests shorten it) */
  refusalLogIntervalMs?: number;
  /**
   * `GET /metrics`: open in dev mode unless `token` is set; in production served only with
   * `token` (as `Authorization: Bearer`), and without one not at all (404 like any unknown route)
   */
  metrics?: {
    metrics: Metrics;
    /** fed by the refusal tally's own call, one per refused request */
    refusals: LabeledCounts;
    token: string | undefined;
  };
}

// DESIGN.md: every body over 16 KiB is refused before it is parsed.
const BODY_LIMIT_BYTES = 16 * 1024;
// A request's headers and its (at most 16 KiB) body take well under this on any real link.
export const REQUEST_TIMEOUT_MS = 30_000;
const HEADERS_TIMEOUT_MS = 10_000;
// Origins change rarely; re-reading the apps on every preflight would put the store on that path.
const CORS_CACHE_MS = 5_000;
// While Redis or PostgreSQL is down every request fails alike; their clients log the outage and
// its end. A line a minute per failure's text says it goes on, and how many requests it failed.
const BACKEND_FAULT_LOG_INTERVAL_MS = 60_000;
// Distinct texts of backend failures tracked at once; more share one line a minute.
const BACKEND_FAULT_LOG_KEYS = 100;

// How each face answers a refusal made before any of its plugins sees the request.
const RENDERERS: Record<PathFace, typeof renderProblem> = {
  cloudbase: renderCloudbaseError,
  idaas: renderIdaasError,
  fresns: renderFresnsError,
  native: renderProblem,
};

/** Builds the HTTP app: hooks, CORS, OpenAPI at /docs, health, and one plugin per API face. */
export async function buildHttpApp(options: HttpAppOptions): Promise<FastifyInstance> {
  const { engine, devMode } = options;
  const proxies = trustedPeers(options.trustProxy);
  const requestIds = createRequestIds();
  const fastify = Fastify({
    loggerInstance: options.logger,
    // A line per request would cost more than the request, and let a flood write the disk full.
    // What is logged instead: bugs (each with its stack), backend failures (once, then a line a
    // minute), and a line a minute tallying refused requests by face, app and error code.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: BODY_LIMIT_BYTES,
    // A client that sends its headers and then stalls its body is cut off (408) rather than
    // holding its socket, and a shutdown waiting on it, for ever (Fastify's default: no limit).
    requestTimeout: options.requestTimeoutMs ?? REQUEST_TIMEOUT_MS,
    // How often Node looks for such requests (its default: 30 s, doubling the wait). Headers take
    // one packet from a real client: one that has not sent them whole in 10 s holds its socket for
    // nothing (Node's default, 60 s, also outlasted requestTimeout for a stalled body).
    http: {
      connectionsCheckingInterval: Math.min(5_000, options.requestTimeoutMs ?? REQUEST_TIMEOUT_MS),
      headersTimeout: Math.min(HEADERS_TIMEOUT_MS, options.requestTimeoutMs ?? REQUEST_TIMEOUT_MS),
      // Node answers an HTTP/1.1 request without Host with a bare 400 of its own; it is refused
      // in the face's shape instead, with the other checks every request passes (cors.ts).
      requireHostHeader: false,
    },
    // What Node's HTTP parser refuses (headers over 16 KiB, a malformed request line or chunk, a
    // request that took too long) is answered in the shape of the face its path names, with a
    // request id, rather than in Node's or Fastify's.
    clientErrorHandler: answerClientErrors({
      requestId: () => requestIds({ headers: {} }),
      log: options.logger,
    }),
    // Long enough for every id and token of every face, so an absurd one is refused by its
    // schema in the caller's error shape rather than by the router with a bare 414.
    routerOptions: { maxParamLength: 512 },
    // A matcher that remembers its answers: Fastify's own parses the socket address on every
    // request that reads `request.ip`.
    trustProxy: options.trustProxy.length > 0 ? (address: string) => proxies.has(address) : false,
    // The caller's x-request-id is read by genReqId, which takes only a short, plain one: Fastify
    // would take any, and put all of it into every line its request logs.
    requestIdHeader: false,
    genReqId: requestIds,
    // A request that arrives on a kept-alive connection while the server shuts down is served as
    // usual (Fastify tells its client the connection closes): the store stays open until the last
    // one is answered (server.ts). Fastify's own 503 would answer it in no face's shape.
    return503OnClosing: false,
    // What the router refuses before any face sees the request (a path that does not decode, a
    // parameter past maxParamLength) is answered like an unknown route: in CloudBase's, IDaaS's and
    // Fresns's shapes under their prefixes, as native problem+json elsewhere.
    frameworkErrors: (error, request, reply) => {
      const refusal = invalidField(
        "path",
        error.code === "FST_ERR_MAX_PARAM_LENGTH"
          ? "A segment of the request path is too long"
          : "The request path is not a valid URL",
      );
      // Refused before the onRequest hooks, so the request id is set here.
      reply.header("x-request-id", request.id);
      return RENDERERS[faceOfPath(request.url)](refusal, request, reply);
    },
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, allErrors: false } },
  });
  // What fails outside every face's plugin (a body refused on a path no route serves, a bug in a
  // route of the root) is answered as native problem+json, not in Fastify's own shape.
  fastify.setErrorHandler(answerErrorsWith(renderProblem));
  // Every body is JSON, read by a parser that says what is wrong with one it refuses; a face that
  // takes other media types (a form, CloudBase's text/plain JSON) adds its parser. Fastify's
  // text/plain parser handed native routes a string, refused as "body must be of type object".
  fastify.removeContentTypeParser(["application/json", "text/plain"]);
  fastify.addContentTypeParser("application/json", { parseAs: "string" }, strictJsonParser(fastify));

  options.onStoreAnswered?.(writeRepliesTogether(fastify));
  fastify.decorate("storeFault", options.storeFault ?? (() => undefined));

  const { clock } = engine.deps;
  fastify.decorateRequest("appId", null);
  const tally = createRefusalTally({
    log: fastify.log,
    clock,
    ...(options.refusalLogIntervalMs === undefined ? {} : { intervalMs: options.refusalLogIntervalMs }),
  });
  const refusalTally = options.metrics ? countingRefusals(tally, options.metrics.refusals) : tally;
  const backendFaultLog = createLogThrottle({
    clock,
    intervalMs: BACKEND_FAULT_LOG_INTERVAL_MS,
    maxKeys: BACKEND_FAULT_LOG_KEYS,
    laterLog: fastify.log,
    tell: tellBackendFault,
  });
  fastify.decorate("refusalTally", refusalTally);
  fastify.decorate("backendFaultLog", backendFaultLog);
  const connections = guardConnections(fastify.server, { proxies, log: fastify.log, clock });
  // What the minute had not told yet is told at shutdown.
  fastify.addHook("onClose", async () => {
    refusalTally.close();
    backendFaultLog.close();
    connections.close();
  });

  installCors(fastify, {
    // first on every request: from there on `request.ip` is the client's address without a port
    ...(options.trustProxy.length > 0 ? { readClient: forwardedClientReader() } : {}),
    anyOrigin: devMode,
    loadOrigins: async () => {
      const apps = await engine.apps.list();
      return new Set(apps.filter((app) => !app.disabled).flatMap((app) => app.corsOrigins));
    },
    cacheMs: CORS_CACHE_MS,
  });

  await fastify.register(swagger, {
    openapi: {
      info: {
        title: "verifyd",
        version: "0.1.0",
        description: "One-time verification codes by email and SMS",
      },
      components: { securitySchemes: SECURITY_SCHEMES },
      // Dev mode takes unauthenticated calls for the app `default` (`{}`: no key at all).
      security: devMode ? [{}, { apiKey: [] }] : [{ apiKey: [] }],
    },
    transform: documentRoute,
  });
  await fastify.register(swaggerUi, { routePrefix: "/docs", uiHooks: documentServedOnce(fastify) });

  // An unknown route is the caller's mistake: answered as problem+json like every native error
  // (the dialects answer their own prefixes in their own shapes).
  fastify.setNotFoundHandler((request, reply) => {
    countRefusal(request, "native", "ROUTE_NOT_FOUND");
    return reply
      .code(404)
      .type("application/problem+json")
      .send({
        type: "urn:verifyd:error:route-not-found",
        title: "Not Found",
        status: 404,
        code: "ROUTE_NOT_FOUND",
        detail: `No route ${request.method} ${request.url.split("?")[0]}`,
      });
  });

  fastify.get("/healthz", async () => ({ status: "ok" }));
  fastify.get("/readyz", async (_request, reply) => {
    const ready = await options.ready().catch(() => false);
    reply.code(ready ? 200 : 503);
    return { status: ready ? "ready" : "unavailable" };
  });
  const { metrics } = options;
  if (metrics && (devMode || metrics.token !== undefined)) {
    const { token } = metrics;
    fastify.get("/metrics", async (request, reply) => {
      if (token !== undefined && !bearerMatches(request.headers.authorization, token)) {
        reply.header("www-authenticate", "Bearer");
        return renderProblem(new OtpError("UNAUTHENTICATED"), request, reply);
      }
      reply.type(metrics.metrics.contentType);
      return metrics.metrics.scrape();
    });
  }

  await fastify.register(nativeApi, { engine, devMode });
  await fastify.register(fresnsDialect, {
    engine,
    disposableEmailDomains: options.disposableEmailDomains,
    trustedProxies: proxies,
  });
  await fastify.register(cloudbaseDialect, { engine, devMode });
  await fastify.register(idaasDialect, { engine, trustedProxies: proxies });
  if (options.callbacks) await fastify.register(deliveryCallbacks, options.callbacks);
  if (devMode) {
    await fastify.register(devApi, {
      inbox: options.devInbox,
      captcha: engine.captcha,
      defaultCountry: options.defaultCountry,
    });
  }
  return fastify;
}
