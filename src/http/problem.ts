import type { FastifyError, FastifyReply, FastifyRequest } from "fastify";
import { OtpError } from "../core/errors.js";

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
    const message =
      fastifyError.code === "FST_ERR_CTP_INVALID_MEDIA_TYPE"
        ? "Content-Type must be application/json"
        : fastifyError.code === "FST_ERR_CTP_EMPTY_JSON_BODY"
          ? "The body must not be empty"
          : "The body is not valid JSON";
    return new OtpError("VALIDATION_FAILED", { message, details: { field: "body" } });
  }
  return request.server.storeFault?.(error) ?? null;
}

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
 */
export function answerErrorsWith(
  render: (error: unknown, request: FastifyRequest, reply: FastifyReply) => FastifyReply,
): (error: unknown, request: FastifyRequest, reply: FastifyReply) => void {
  return (error, request, reply) => {
    render(error, request, reply);
  };
}
