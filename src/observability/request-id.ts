import { randomBytes } from "node:crypto";
import type { IncomingHttpHeaders } from "node:http";

/** Where a caller (a proxy, a tracing client) passes its own request id; answers echo it there. */
const REQUEST_ID_HEADER = "x-request-id";
// A caller's id is written into every log line of its request and echoed in answers: a 16 KB one
// made each line 16 KB. Trace ids (W3C's 32 hex digits, a UUID, a proxy's) fit well inside this.
const MAX_CALLER_ID_CHARS = 64;
const CALLER_ID = /^[A-Za-z0-9._:-]+$/;

/**
 * Request ids for one process: the caller's own (`x-request-id`) when it is at most 64 characters
 * of `[A-Za-z0-9._:-]`, else a random prefix drawn once per process and a counter. Fastify's own
 * ids are a bare per-process counter (`req-1` in every process, again after every restart), which
 * makes a quoted id name no one request across a cluster's processes or a day's logs. A request
 * costs a length check and a pattern test, or an increment and a string join; no random draw.
 */
export function createRequestIds(): (request: { headers: IncomingHttpHeaders }) => string {
  // 40 bits: two processes of a deployment share a prefix about once in a trillion pairs.
  const prefix = randomBytes(5).toString("hex");
  let counter = 0;
  return (request) => {
    const given = request.headers[REQUEST_ID_HEADER];
    if (typeof given === "string" && given.length <= MAX_CALLER_ID_CHARS && CALLER_ID.test(given))
      return given;
    counter += 1;
    return `${prefix}-${counter.toString(36)}`;
  };
}
