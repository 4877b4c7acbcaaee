import { OtpError } from "../core/errors.js";

/**
 * The one place where backend failures become OtpError STORE_UNAVAILABLE, so every API face
 * answers its own 503 while Redis or PostgreSQL is unreachable. OtpErrors an adapter throws on
 * purpose (ACCOUNT_EXISTS) pass through untouched. Fail closed: nothing is retried or guessed here.
 */
export function unavailable(backend: string, error: unknown): OtpError {
  if (error instanceof OtpError) return error;
  const reason = error instanceof Error ? error.message : String(error);
  return storeUnavailable(`${backend}: ${reason}`, error);
}

// A backend comes back by itself (the clients reconnect with backoff), so a caller is told to try
// again soon, as a refused request always says when.
const RETRY_AFTER_SECONDS = 1;

/** The 503 of a backend fault: `internal` for the log, never the caller. */
export function storeUnavailable(internal: string, cause: unknown): OtpError {
  return new OtpError("STORE_UNAVAILABLE", {
    internal,
    cause,
    details: { retryAfterSeconds: RETRY_AFTER_SECONDS },
  });
}

/**
 * Wraps every method of a port so that a rejection (or a synchronous throw) from the backend
 * surfaces as STORE_UNAVAILABLE. Non-function members are copied as they are.
 */
export function failClosed<Port extends object>(backend: string, port: Port): Port {
  const wrapped: Record<string, unknown> = {};
  for (const [name, member] of Object.entries(port)) {
    if (typeof member !== "function") {
      wrapped[name] = member;
      continue;
    }
    const method = member as (...args: unknown[]) => unknown;
    wrapped[name] = (...args: unknown[]) => {
      try {
        const result = method.apply(port, args);
        return result instanceof Promise
          ? result.catch((error: unknown) => {
              throw unavailable(backend, error);
            })
          : result;
      } catch (error) {
        throw unavailable(backend, error);
      }
    };
  }
  return wrapped as Port;
}
