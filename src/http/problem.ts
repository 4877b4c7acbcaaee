import type { FastifyError, FastifyReply, FastifyRequest } from "fastify";
import { OtpError } from "../core/errors.js";
import { isBodyFramingRefusal } from "./shared/body-parsers.js";

declare module "fastify" {
  interface FastifyInstance {
    /**
     * the backend's failures a request should see as STORE_UNAVAILABLE (`HttpAppOptions.storeFault`;
     * absent on an instance not built by `buildHttpApp`)
     */
    storeFault?: (error: unknown) => OtpError | undefined;
  }
}

/**
 * Turns whatever a handler threw into an OtpError: core errors pass through; Fastify's own
 * refusals (schema validation, malformed JSON, body too large, wrong content type) become
 * VALIDATION_FAILED / BODY_TOO_LARGE naming the field; a failure of the store (an embedded file
 * that cannot be read) becomes STORE_UNAVAILABLE; anything else is a bug and returns null.
 */
export function toOtpError(error: unknown, request: FastifyRequest): OtpError | null {
  if (error instanceof OtpError) return error;
  const fastifyError = error as FastifyError & { validation?: ValidationIssue[]; validationContext?: string };
  if (fastifyError.validation && fastifyError.validation.length > 0) {
    const issue = fastifyError.validation[0] as ValidationIssue;
    const field = fieldOf(issue, fastifyError.validationContext);
    return new OtpError("VALIDATION_FAILED", {
      message: describeIssue(field, issue),
      details: { field },
    });
  }
  if (fastifyError.code === "FST_ERR_CTP_BODY_TOO_LARGE") {
    return new OtpError("BODY_TOO_LARGE", {
      message: "The request body is larger than 16 KiB",
      details: { field: "body" },
    });
  }
  const status = fastifyError.statusCode;
  if (typeof status === "number" && status >= 400 && status < 500) {
    const said = FASTIFY_REFUSALS[fastifyError.code];
    return new OtpError("VALIDATION_FAILED", {
      message: said?.message ?? "The request is invalid",
      details: { field: said?.field ?? "request" },
    });
  }
  return request.server.storeFault?.(error) ?? null;
}

// What each of Fastify's own refusals of a request says, and the part of the request at fault.
// (The refused `__proto__` key and a Content-Encoding are worded where the body is parsed:
// shared/body-parsers.ts.)
const FASTIFY_REFUSALS: Readonly<Record<string, { message: string; field: string }>> = {
  FST_ERR_CTP_INVALID_MEDIA_TYPE: { message: "Content-Type must be application/json", field: "body" },
  FST_ERR_CTP_EMPTY_JSON_BODY: { message: "The body must not be empty", field: "body" },
  FST_ERR_CTP_INVALID_JSON_BODY: { message: "The body is not valid JSON", field: "body" },
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: {
    message: "The body is not as long as its Content-Length says",
    field: "body",
  },
  FST_ERR_ROUTE_MISSING_CONTENT_TYPE: { message: "Content-Type is required", field: "content-type" },
};

interface ValidationIssue {
  keyword: string;
  instancePath: string;
  message?: string;
  params: Record<string, unknown>;
}

function fieldOf(issue: ValidationIssue, context: string | undefined): string {
  const missing = issue.params.missingProperty;
  const extra = issue.params.additionalProperty;
  const base = issue.instancePath.replace(/^\//, "").replaceAll("/", ".");
  const name = typeof missing === "string" ? missing : typeof extra === "string" ? extra : "";
  const field = [base, name].filter(Boolean).join(".");
  return field || (context ?? "body");
}

function describeIssue(field: string, issue: ValidationIssue): string {
  switch (issue.keyword) {
    case "required":
      return `${field} is required`;
    case "additionalProperties":
      return `${field} is not a known field`;
    case "enum":
    case "anyOf":
    case "const":
      return `${field} must be one of the documented values`;
    case "type":
      return `${field} must be of type ${String(issue.params.type)}`;
    default:
      return `${field} ${issue.message ?? "is invalid"}`;
  }
}

/** Logs an unexpected error and returns the request id to show the caller (supabase `ErrorID`). */
export function logUnexpected(request: FastifyRequest, error: unknown): string {
  request.log.error({ err: error }, "unexpected error");
  return String(request.id);
}

/** Sets Retry-After when the error says how long to wait. */
export function setRetryAfter(reply: FastifyReply, error: OtpError): void {
  const seconds = error.details.retryAfterSeconds;
  if (seconds !== undefined) reply.header("retry-after", String(seconds));
}

/**
 * An error handler that answers with `render` and returns nothing. Returned, the reply `render`
 * sent would be a thenable to Fastify, which resolves it once the response has finished: an
 * end-of-stream listener on every error answered.
 *
 * A request for a path no route serves whose body was refused before its not-found handler ran
 * (not JSON, too large, compressed) is answered by that handler, in the scope's shape, as it is
 * with any other body: the route is what is wrong, and a body refusal would suggest the path
 * exists. (A face's refusal of its headers, such as IDaaS's device headers, still comes first.)
 */
export function answerErrorsWith(
  render: (error: unknown, request: FastifyRequest, reply: FastifyReply) => FastifyReply,
): (error: unknown, request: FastifyRequest, reply: FastifyReply) => void {
  return (error, request, reply) => {
    if (request.is404 && isBodyFramingRefusal(error)) {
      answerNotFound(request, reply, (thrown) => render(thrown, request, reply));
      return;
    }
    render(error, request, reply);
  };
}

/** Runs the not-found handler of the request's scope (`routeOptions.handler` of a 404). */
function answerNotFound(request: FastifyRequest, reply: FastifyReply, fail: (error: unknown) => void): void {
  let answered: unknown;
  try {
    answered = request.routeOptions.handler.call(request.server, request, reply);
  } catch (error) {
    fail(error);
    return;
  }
  // (a reply is a thenable too, resolved once sent: only a handler's own promise is awaited)
  if (answered instanceof Promise) {
    answered.then((body: unknown) => {
      if (!reply.sent && body !== undefined && body !== reply) reply.send(body);
    }, fail);
  }
}
