import { expect } from "vitest";
import { OtpError } from "../../src/core/errors.js";

/** Awaits a core call that must fail, and returns its OtpError (any other outcome fails the test). */
export async function otpError(call: Promise<unknown>): Promise<OtpError> {
  const outcome = await call.then(
    (value) => ({ value }),
    (error: unknown) => ({ error }),
  );
  if (!("error" in outcome)) throw new Error(`expected an OtpError, got ${JSON.stringify(outcome.value)}`);
  expect(outcome.error).toBeInstanceOf(OtpError);
  return outcome.error as OtpError;
}
