import { describe, expect, it } from "vitest";
import { OtpError } from "../core/errors.js";
import { failClosed, unavailable } from "./store-unavailable.js";

describe("a backend's fault", () => {
  // Regression: only the cluster send's 503s said when to try again; every other backend fault
  // (an unreachable Redis or PostgreSQL, a full disk) answered a 503 without Retry-After.
  it("is STORE_UNAVAILABLE that says to try again in a second, naming the backend only internally", async () => {
    const port = failClosed("redis", {
      get: async () => {
        throw new Error("connect ECONNREFUSED 127.0.0.1:6379");
      },
    });
    const error = await port.get().catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(OtpError);
    expect(error).toMatchObject({
      code: "STORE_UNAVAILABLE",
      internal: "redis: connect ECONNREFUSED 127.0.0.1:6379",
      details: { retryAfterSeconds: 1 },
    });
  });

  it("leaves an OtpError an adapter throws on purpose as it is", () => {
    const exists = new OtpError("ACCOUNT_EXISTS");
    expect(unavailable("postgres", exists)).toBe(exists);
  });
});
