import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { MessageSender, RenderedMessage } from "../../src/core/ports.js";
import { sendFailure } from "./send-failure.js";
import { type SmsHttpStub, type StubReply, startSmsHttpStub } from "./sms-http-stub.js";

const TEST_TIMEOUT_MS = 200;

/**
 * The faults every HTTP provider must survive as transient failures (the outbox retries them or
 * fails over): a server error, throttling, a timeout, an unreadable body and a dropped connection.
 */
export function describeHttpFaults(
  createSender: (baseUrl: string, timeoutMs: number) => MessageSender,
  message: RenderedMessage,
  /** false for receivers whose 2xx needs no particular answer (the generic webhook) */
  { answerCarriesFields = true }: { answerCarriesFields?: boolean } = {},
): void {
  describe("HTTP faults", () => {
    let stub: SmsHttpStub;
    let sender: MessageSender;

    beforeAll(async () => {
      stub = await startSmsHttpStub();
      sender = createSender(stub.url, TEST_TIMEOUT_MS);
    });

    afterAll(async () => {
      await sender.close?.();
      await stub.close();
    });

    const faults: Array<[string, StubReply]> = [
      ["a 500 answer", { status: 500, json: { message: "internal error" } }],
      ["a 503 answer with an HTML body", { status: 503, body: "<html>Service Unavailable</html>" }],
      ["a 429 answer", { status: 429, json: { message: "too many requests" } }],
      ["no answer before the timeout", { status: 200, json: {}, delayMs: TEST_TIMEOUT_MS * 5 }],
      ["a 200 answer that is not JSON", { status: 200, body: "{not json" }],
      ["a connection closed without an answer", { destroy: true }],
    ];
    if (answerCarriesFields) {
      faults.push(["a 200 answer without the expected fields", { status: 200, json: { unrelated: true } }]);
    }

    it.each(faults)("fails transiently on %s", async (_name, reply) => {
      stub.enqueue(reply);
      const failure = await sendFailure(sender.send(message));
      expect(failure.permanent).toBe(false);
    });
  });
}
