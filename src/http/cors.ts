import type { FastifyInstance, FastifyReply, FastifyRequest, HookHandlerDoneFunction } from "fastify";
import { invalidField } from "../core/errors.js";

export interface CorsOptions {
  /** every origin is granted (dev mode) */
  anyOrigin: boolean;
  /** the origins granted: the enabled apps' `corsOrigins` */
  loadOrigins: () => Promise<Set<string>>;
  /** how long a loaded set of origins is used before it is loaded again */
  cacheMs: number;
  /** the clock of the cache (ms) */
  now?: () => number;
  /** run first on every request, where the client's address is read (`forwardedClientReader`) */
  readClient?: (request: FastifyRequest) => void;
}

// Each face has its own request headers (X-Fresns-*, x-device-id, X-device-fingerprint, …): the
// origin is what is checked, so a preflight's requested headers are reflected.
const EXPOSED_HEADERS = "retry-after, x-request-id";
// Fresns edits with PUT and logs out with DELETE; CloudBase changes a contact or password by PATCH.
const ALLOWED_METHODS = "GET, HEAD, POST, PUT, PATCH, DELETE";
const PREFLIGHT_MAX_AGE_SECONDS = "600";

/**
 * CORS for the apps' browser pages, as @fastify/cors did it with our options, but hand-written:
 * that plugin's hook cost ~5.8 µs on every request, those without an Origin header too (every
 * server-to-server call), a fifth of a refused send's CPU (bench/RESULTS.md, nineteenth session).
 * Here a request without Origin gets only `Vary: Origin`.
 *
 * Its hook is the first every request passes, so it also gives every reply of every face the
 * request's id (`x-request-id`: the caller's own when it sent a usable one), for a client to quote,
 * replies that later hooks make (a preflight, a refusal before the body) too, and refuses an
 * HTTP/1.1 request without Host. A hook of its own cost ~2 µs a request more than the header does
 * (a seventh of a /healthz).
 *
 * A granted origin is reflected with the exposed headers; an OPTIONS is answered 204 with the
 * methods, whether or not it is a real preflight (no Origin, or no Access-Control-Request-Method:
 * a client asking what the route allows), unless its origin is refused: no route takes an OPTIONS,
 * so that one is answered as an unknown route, in the face's shape.
 */
export function installCors(fastify: FastifyInstance, options: CorsOptions): void {
  const now = options.now ?? Date.now;
  let origins: { set: Set<string>; atMs: number } | undefined;
  const granted = async (origin: string): Promise<boolean> => {
    const atMs = now();
    if (origins === undefined || atMs - origins.atMs >= options.cacheMs) {
      origins = { set: await options.loadOrigins(), atMs };
    }
    return origins.set.has(origin);
  };

  fastify.addHook(
    "onRequest",
    (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction) => {
      options.readClient?.(request);
      reply.header("x-request-id", request.id);
      reply.header("vary", "Origin");
      // Node's own check is off (app.ts): it answered a bare 400 in no face's shape.
      if (request.headers.host === undefined && request.raw.httpVersion === "1.1") {
        return done(invalidField("host", "An HTTP/1.1 request must carry a Host header"));
      }
      const origin = request.headers.origin;
      // (an empty Origin is no origin: no browser sends one, and it must not be reflected)
      if (!origin) {
        if (request.raw.method === "OPTIONS") return answerPreflight(request, reply);
        return done();
      }
      if (options.anyOrigin) return grant(origin, request, reply, done);
      granted(origin).then(
        (yes) => (yes ? grant(origin, request, reply, done) : done()),
        (error: unknown) => done(error as Error),
      );
    },
  );
}

function grant(
  origin: string,
  request: FastifyRequest,
  reply: FastifyReply,
  done: HookHandlerDoneFunction,
): void {
  reply.header("access-control-allow-origin", origin);
  reply.header("access-control-expose-headers", EXPOSED_HEADERS);
  if (request.raw.method === "OPTIONS") answerPreflight(request, reply);
  else done();
}

function answerPreflight(request: FastifyRequest, reply: FastifyReply): void {
  reply.header("access-control-allow-methods", ALLOWED_METHODS);
  reply.header("vary", "Origin, Access-Control-Request-Headers");
  const asked = request.headers["access-control-request-headers"];
  if (asked !== undefined) reply.header("access-control-allow-headers", asked);
  reply.header("access-control-max-age", PREFLIGHT_MAX_AGE_SECONDS);
  // Safari waits for a body on a 204 without a length.
  reply.code(204).header("content-length", "0").send();
}
