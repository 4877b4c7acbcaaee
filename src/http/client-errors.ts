import { STATUS_CODES } from "node:http";
import type { Socket } from "node:net";
import type { FastifyBaseLogger } from "fastify";
import { OtpError } from "../core/errors.js";
import { cloudbaseErrorOf } from "./dialects/cloudbase/error-map.js";
import { CLOUDBASE_PREFIX } from "./dialects/cloudbase/routes.js";
import { fresnsCodeOf } from "./dialects/fresns/error-map.js";
import { isFresnsPath } from "./dialects/fresns/routes.js";
import { idaasErrorOf, idaasMessage } from "./dialects/idaas/error-map.js";
import { IDAAS_PREFIX } from "./dialects/idaas/routes.js";
import { statusTitle } from "./native/error-map.js";

/** The face a path is for, by its prefix: the dialects' own, native (problem+json) elsewhere. */
export type PathFace = "cloudbase" | "idaas" | "fresns" | "native";

export function faceOfPath(path: string): PathFace {
  if (path.startsWith(`${CLOUDBASE_PREFIX}/`)) return "cloudbase";
  if (path.startsWith(`${IDAAS_PREFIX}/`)) return "idaas";
  if (isFresnsPath(path)) return "fresns";
  return "native";
}

/**
 * A request Node's HTTP parser refused (`clientError`): `rawPacket` is a Buffer of the chunk the
 * parser was reading when it failed (none for a timeout), not necessarily the request's start.
 */
type ClientError = Error & { code?: string; rawPacket?: unknown };

/** The socket of a `clientError`: Node's parser holds the request whose headers it completed. */
type ClientSocket = Socket & {
  parser?: { incoming?: { url?: unknown; complete?: boolean } | null } | null;
};

// How much of what arrived is searched for the request line's path: a request line longer than
// this is a refusal (of its headers' size) whichever face it is answered in.
const REQUEST_LINE_SCAN_BYTES = 8 * 1024;

/**
 * Fastify's `clientErrorHandler`: a request Node's HTTP parser refuses (headers over 16 KiB, a
 * malformed request line, header or chunk, a request that took too long to arrive) never reaches
 * Fastify, and Node's or Fastify's answer to it has no face's shape and no request id. Here it is
 * answered in the shape of the face its path names (where it is known: `requestPathOf`) with a
 * request id of its own, told in `x-request-id` and logged, and the connection is closed, since
 * what follows on it cannot be read.
 */
export function answerClientErrors(options: {
  requestId: () => string;
  log: FastifyBaseLogger;
}): (error: ClientError, socket: ClientSocket) => void {
  return (error, socket) => {
    // A reset connection has no one to answer.
    if (error.code === "ECONNRESET" || socket.destroyed) return;
    const requestId = options.requestId();
    const { status, refusal } = refusalOf(error);
    options.log.debug({ err: error, requestId }, "request refused by the HTTP parser");
    if (socket.writable) {
      const path = requestPathOf(error, socket);
      const { contentType, body } = clientErrorBody(faceOfPath(path ?? "/"), status, refusal);
      const text = JSON.stringify(body);
      socket.write(
        `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: ${contentType}\r\n` +
          `Content-Length: ${Buffer.byteLength(text)}\r\nx-request-id: ${requestId}\r\n` +
          `Connection: close\r\n\r\n${text}`,
      );
    }
    socket.destroy();
  };
}

/** The HTTP status Node gives each refusal, and what the caller is told. */
function refusalOf(error: ClientError): { status: number; refusal: OtpError } {
  switch (error.code) {
    case "ERR_HTTP_REQUEST_TIMEOUT":
      return { status: 408, refusal: refused("request", "The request did not arrive in time") };
    case "HPE_HEADER_OVERFLOW":
      return {
        status: 431,
        refusal: refused("headers", "The request line and headers are larger than 16 KiB"),
      };
    case "HPE_CHUNK_EXTENSIONS_OVERFLOW":
      return {
        status: 413,
        refusal: new OtpError("BODY_TOO_LARGE", {
          message: "The body's chunk extensions are too large",
          details: { field: "body" },
        }),
      };
    default:
      return { status: 400, refusal: refused("request", "The request is not valid HTTP/1.1") };
  }
}

function refused(field: string, message: string): OtpError {
  return new OtpError("VALIDATION_FAILED", { message, details: { field } });
}

/**
 * A face's error body for a refusal with this HTTP status: the face's words for the core code, the
 * status Node gives the refusal (a Fresns envelope too: no HTTP 200 to a request that was not one).
 */
function clientErrorBody(
  face: PathFace,
  status: number,
  refusal: OtpError,
): { contentType: string; body: object } {
  const json = "application/json; charset=utf-8";
  switch (face) {
    case "cloudbase":
      return { contentType: json, body: cloudbaseErrorOf(refusal).body };
    case "idaas": {
      const wire = idaasErrorOf(refusal);
      return { contentType: json, body: { error_code: wire.code, error_msg: idaasMessage(wire, "en") } };
    }
    case "fresns":
      return {
        contentType: json,
        body: { code: fresnsCodeOf(refusal, undefined), message: refusal.message, data: null },
      };
    case "native":
      return {
        contentType: "application/problem+json; charset=utf-8",
        body: {
          type: `urn:verifyd:error:${refusal.code.toLowerCase().replaceAll("_", "-")}`,
          // (native's titles name the statuses its routes answer; 408 and 431 are Node's)
          title: statusTitle(status) === "Error" ? (STATUS_CODES[status] ?? "Error") : statusTitle(status),
          status,
          code: refusal.code,
          detail: refusal.message,
          field: refusal.details.field,
        },
      };
  }
}

/**
 * The path of the refused request, where it can be known: the request Node's parser holds once its
 * headers are complete (a bad chunk, a stalled body), else a request line at the start of the chunk
 * that failed. Headers that never completed name none when the fault came in a later chunk than the
 * request line, or with no chunk (stalled): answered as native.
 */
function requestPathOf(error: ClientError, socket: ClientSocket): string | undefined {
  const incoming = socket.parser?.incoming;
  // (a complete request is one already read, not the one refused)
  if (incoming && !incoming.complete && typeof incoming.url === "string")
    return /^[^?#]*/.exec(incoming.url)?.[0];
  const packet = error.rawPacket;
  if (!Buffer.isBuffer(packet)) return undefined;
  const head = packet.subarray(0, REQUEST_LINE_SCAN_BYTES).toString("latin1");
  return /^[A-Z]+ (\/[^ ?#\r\n]*)/.exec(head)?.[1];
}
