import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";
import { SendFailure } from "../../core/ports.js";

/**
 * How long a provider call may take by default, connection and answer included: as long as the
 * outbox worker's try (20 s) allows with room to spare. A vendor answering slowly has usually
 * sent the message, and a call given up on is recorded unconfirmed and never retried, so the
 * longer the wait, the fewer codes end that way.
 */
export const PROVIDER_TIMEOUT_MS = 18_000;
// Keep-alive connections idle this long are closed by us, below most servers' own idle limit
// (Node's 5 s, nginx's 75 s). That does not keep a request off a connection the server is closing
// (a server with a shorter limit, or our timer late on a busy event loop): such a request fails
// with a reset and no answer, like one the server took and never answered, so it is made again
// once on a new connection (see `fetchJson`).
const IDLE_CONNECTION_MS = 2_000;
// How a pooled connection the server had already closed fails a request written onto it.
const STALE_CONNECTION_CODES = new Set(["ECONNRESET", "EPIPE"]);
const agents = {
  "http:": new HttpAgent({ keepAlive: true, timeout: IDLE_CONNECTION_MS }),
  "https:": new HttpsAgent({ keepAlive: true, timeout: IDLE_CONNECTION_MS }),
};

export interface ProviderRequest {
  method: "POST";
  headers: Record<string, string>;
  body: string;
}

export interface JsonReply {
  status: number;
  /** the parsed JSON body; `undefined` when the body was empty or not JSON */
  body: unknown;
}

/**
 * Makes one HTTP call to a provider and reads its answer as JSON; redirects are not followed (a
 * redirect of a signed POST is never legitimate for these APIs, and following it would replay
 * credentials to another host). What keeps us from reading an answer becomes a `SendFailure`,
 * told apart by whether the provider may have taken the message:
 * - not sent, transient: the request was never written in full (a refused connection, a DNS or
 *   TLS failure, a connection that did not open in time), or the answer was an error status;
 * - unconfirmed: the whole request was written and no answer came (the timeout, or the connection
 *   closed), or a 2xx answer could not be read to its end. The provider may well have sent it.
 * A body that is not JSON is not an error here: the caller decides what a given status without a
 * readable body means (except a 2xx that claims JSON and does not parse: an answer cut short).
 */
export function fetchJson(
  provider: string,
  url: string,
  init: ProviderRequest,
  timeoutMs: number = PROVIDER_TIMEOUT_MS,
): Promise<JsonReply> {
  const deadlineMs = Date.now() + timeoutMs;
  return callOnce(provider, new URL(url), init, timeoutMs, true).catch((error: unknown) => {
    // A request on a reused keep-alive connection that the server had closed meanwhile fails at
    // once, with no byte of an answer: the server, closing, never read it. Made again once on a
    // new connection (Node's documented pattern), it is not lost, and nothing is sent twice.
    if (!(error instanceof StaleConnection)) throw error;
    const leftMs = deadlineMs - Date.now();
    if (leftMs <= 0) throw error.failure;
    return callOnce(provider, new URL(url), init, leftMs, false);
  });
}

/** The failure of a request written onto a reused connection the server had closed. */
class StaleConnection extends Error {
  constructor(readonly failure: SendFailure) {
    super(failure.message);
  }
}

/** One request; `pooled`: on a keep-alive connection (else a new one, closed after it). */
function callOnce(
  provider: string,
  target: URL,
  init: ProviderRequest,
  timeoutMs: number,
  pooled: boolean,
): Promise<JsonReply> {
  const https = target.protocol === "https:";
  return new Promise<JsonReply>((resolve, reject) => {
    let written = false;
    let timedOut = false;
    let status: number | undefined;
    const fail = (cause: unknown) => {
      clearTimeout(timer);
      const problem = !timedOut
        ? describe(cause)
        : written
          ? `no answer within ${timeoutMs} ms`
          : `the request could not be sent within ${timeoutMs} ms`;
      // Once a 2xx status arrived, the provider took the message, whatever became of the body.
      const unconfirmed = status === undefined ? written : status >= 200 && status < 300;
      const answered = status === undefined ? "" : `HTTP ${status}, then `;
      const failure = new SendFailure(`${provider}: ${answered}${problem}`, { unconfirmed, cause });
      const stale = request.reusedSocket && status === undefined && !timedOut && isReset(cause);
      reject(stale ? new StaleConnection(failure) : failure);
    };
    const request = (https ? httpsRequest : httpRequest)(
      target,
      {
        method: init.method,
        headers: { ...init.headers, "content-length": String(Buffer.byteLength(init.body)) },
        agent: !pooled ? false : https ? agents["https:"] : agents["http:"],
      },
      (response) => {
        const answered = response.statusCode ?? 0;
        status = answered;
        readBody(response).then((text) => {
          clearTimeout(timer);
          const contentType = response.headers["content-type"] ?? "";
          const body = parseJson(text);
          const ok = answered >= 200 && answered < 300;
          if (ok && body === undefined && text.trim() !== "" && /\bjson\b/i.test(contentType)) {
            fail(new Error("a JSON body that does not parse (cut short?)"));
            return;
          }
          resolve({ status: answered, body });
        }, fail);
      },
    );
    // One timer bounds the whole exchange, body included, so a server that stalls mid-body
    // cannot hold the send past its timeout.
    const timer = setTimeout(() => {
      timedOut = true;
      request.destroy();
    }, timeoutMs);
    // Emitted once the last byte of the request was handed to the connection: from here on the
    // provider may act on it.
    request.on("finish", () => {
      written = true;
    });
    request.on("error", (error) => {
      if (status === undefined) fail(error);
    });
    request.end(init.body);
  });
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function readBody(response: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    response.on("data", (chunk: Buffer) => chunks.push(chunk));
    response.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    response.on("error", reject);
    // A connection closed mid-body ends the response without "end"; "close" then tells.
    response.on("close", () => {
      if (!response.complete) reject(new Error("the connection closed before the answer ended"));
    });
  });
}

function isReset(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" && STALE_CONNECTION_CODES.has(code);
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function describe(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    // "socket hang up" says nothing to an operator; the code does (ECONNRESET, ECONNREFUSED, …).
    return typeof code === "string" && !error.message.includes(code)
      ? `${error.message} (${code})`
      : error.message;
  }
  return String(error);
}
