import { SendFailure } from "../../core/ports.js";

export interface JsonReply {
  status: number;
  /** the parsed JSON body; `undefined` when the body was empty or not JSON */
  body: unknown;
  /** the body claimed to be JSON (by content type) but could not be parsed: a truncated or broken answer */
  malformed: boolean;
}

/**
 * Makes one HTTP call to a provider and reads its answer as JSON. Whatever keeps us from reading an
 * answer at all (refused or dropped connection, the timeout, a broken body) becomes a transient
 * `SendFailure`, because the provider may well accept the same message on the next try. A body
 * that is not JSON is not an error here: the caller decides what a given status without a readable
 * body means.
 */
export async function fetchJson(
  provider: string,
  url: string,
  init: RequestInit,
  timeoutMs: number,
): Promise<JsonReply> {
  let status: number;
  let contentType: string;
  let text: string;
  try {
    // One signal bounds the whole exchange, body included, so a server that stalls mid-body
    // cannot hold the send past its timeout.
    const signal = AbortSignal.timeout(timeoutMs);
    // A redirect of a signed POST is never legitimate for these APIs; following it would replay
    // credentials to another host.
    const response = await fetch(url, { ...init, signal, redirect: "error" });
    status = response.status;
    contentType = response.headers.get("content-type") ?? "";
    text = await response.text();
  } catch (error) {
    throw new SendFailure(`${provider}: ${describeFetchError(error, timeoutMs)}`, { cause: error });
  }
  const body = parseJson(text);
  const malformed = body === undefined && text.trim() !== "" && /\bjson\b/i.test(contentType);
  return { status, body, malformed };
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function describeFetchError(error: unknown, timeoutMs: number): string {
  if (error instanceof Error && (error.name === "TimeoutError" || error.name === "AbortError")) {
    return `no answer within ${timeoutMs} ms`;
  }
  if (error instanceof Error) {
    // undici reports every network failure as "fetch failed"; the useful part is in `cause`.
    const cause = error.cause instanceof Error ? `: ${error.cause.message}` : "";
    return `${error.message}${cause}`;
  }
  return String(error);
}
