import { expect } from "vitest";
import { SendFailure } from "../../src/core/ports.js";

/** Awaits a send that must fail, and returns its SendFailure (any other outcome fails the test). */
export async function sendFailure(sending: Promise<unknown>): Promise<SendFailure> {
  const outcome = await sending.then(
    (receipt) => ({ receipt }),
    (error: unknown) => ({ error }),
  );
  if (!("error" in outcome))
    throw new Error(`expected a SendFailure, got ${JSON.stringify(outcome.receipt)}`);
  expect(outcome.error).toBeInstanceOf(SendFailure);
  return outcome.error as SendFailure;
}
