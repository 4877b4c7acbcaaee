import type { FastifyBaseLogger, FastifyRequest } from "fastify";
import type { OtpError, OtpErrorCode } from "../../core/errors.js";
import type { Face } from "../../core/types.js";
import type { LogThrottle } from "../../observability/log-throttle.js";
import type { RefusalTally } from "../../observability/refusal-tally.js";
import { logUnexpected } from "../problem.js";

declare module "fastify" {
  interface FastifyInstance {
    /** the per-process tally of refused requests (`buildHttpApp`; absent on a bare instance) */
    refusalTally?: RefusalTally;
    /** the backend faults' log, at most a line a minute per fault (`buildHttpApp`) */
    backendFaultLog?: LogThrottle<FastifyBaseLogger, OtpError>;
  }
  interface FastifyRequest {
    /** the id of the app the request was resolved to, once it was (see `servedApp`) */
    appId: string | null;
  }
}

/** The tally's app for a request refused before its app was known (an unknown app, a bad key). */
const NO_APP = "-";
/** The tally's code for an error no face could name: a bug, logged with its stack. */
const INTERNAL = "INTERNAL";

/**
 * The core codes that mean the server, not the caller, failed. Each is answered with its text
 * logged; a backend outage answers every request so, so the text is logged once, then at most once
 * a minute per text with the count of those it did not log.
 */
const BACKEND_FAULTS: ReadonlySet<OtpErrorCode> = new Set<OtpErrorCode>([
  "STORE_UNAVAILABLE",
  "DELIVERY_FAILED",
  "TEMPLATE_MISSING",
]);

/** Remembers the app a request was resolved to, so that its refusals are counted under it. */
export function servedApp<App extends { id: string }>(request: FastifyRequest, app: App): App {
  request.appId = app.id;
  return app;
}

/**
 * Counts a refusal a face decided without a core error: its own wire code (Fresns's 31303, IDaaS's
 * PARAM.0001), an unknown route. One increment, no allocation once the code was counted this minute.
 */
export function countRefusal(request: FastifyRequest, face: Face, code: string | number): void {
  request.server.refusalTally?.count(face, request.appId ?? NO_APP, code);
}

/**
 * What every face's renderer calls for a core error it answers: counted for the tally, and a
 * backend fault logged as `{error, internal}` (no stack: the backend's client logs an outage once,
 * and its stack is the same on every request), throttled per text.
 */
export function answeredError(request: FastifyRequest, face: Face, error: OtpError): void {
  countRefusal(request, face, error.code);
  // A fault says what failed in its `internal` text. An answer core gives on purpose under such a
  // code has none, and is only counted: a keyed retry while its first send commits is told
  // STORE_UNAVAILABLE (each face's 503, retry in 1 s), for up to a minute while a lost commit settles.
  if (!BACKEND_FAULTS.has(error.code) || error.internal === undefined) return;
  const { internal } = error;
  const log = request.server.backendFaultLog;
  if (log === undefined) request.log.warn({ error: error.code, internal }, "backend error");
  else log.occurred(request.log, `${error.code} ${internal}`, error);
}

/**
 * What every face's renderer calls for an error that is no core error: a bug, logged with its
 * stack (every one: a bug is fixed, not throttled) and counted. Returns the request id to show.
 */
export function answeredBug(request: FastifyRequest, face: Face, error: unknown): string {
  countRefusal(request, face, INTERNAL);
  return logUnexpected(request, error);
}

/** The line of a backend fault (`backendFaultLog`'s `tell`). */
export function tellBackendFault({
  log,
  count,
  atOccurrence,
  detail,
}: {
  log: FastifyBaseLogger;
  count: number;
  atOccurrence: boolean;
  detail: OtpError;
}): void {
  log.warn(
    {
      // not `code`: the logger redacts that name everywhere (verification codes)
      error: detail.code,
      internal: detail.internal ?? detail.message,
      // those since the previous line that had none of their own
      suppressed: atOccurrence ? count - 1 : count,
    },
    "backend error",
  );
}
