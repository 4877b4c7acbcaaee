import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import type { MessageSender, RenderedMessage } from "../../src/core/ports.js";
import { closedPort } from "./closed-port.js";
import { sendFailure } from "./send-failure.js";
import { type SmsHttpStub, type StubReply, startSmsHttpStub } from "./sms-http-stub.js";

const TEST_TIMEOUT_MS = 200;

/**
 * The faults every HTTP provider must survive. Those that show the message was not taken (an
 * error status, an answer that is not an acceptance, a refused connection) are transient failures,
 * which the outbox retries or fails over. Those after which the provider may have taken it (no
 * answer to the whole request, the connection closed after it, a 2xx cut short) are unconfirmed:
 * never retried, because a retry would send the code twice whenever the first went out.
 */
export function describeHttpFaults(
  /** `timeoutMs` undefined: the sender's default */
  createSender: (baseUrl: string, timeoutMs: number | undefined) => MessageSender,
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

    const notSent: Array<[string, StubReply]> = [
      ["a 500 answer", { status: 500, json: { message: "internal error" } }],
      ["a 503 answer with an HTML body", { status: 503, body: "<html>Service Unavailable</html>" }],
      ["a 429 answer", { status: 429, json: { message: "too many requests" } }],
    ];
    const unconfirmed: Array<[string, StubReply]> = [
      ["no answer before the timeout", { status: 200, json: {}, delayMs: TEST_TIMEOUT_MS * 5 }],
      ["a connection closed without an answer", { destroy: true }],
      ["a 200 answer whose JSON does not parse", { status: 200, body: "{not json" }],
    ];
    // Regression: a 2xx without the fields the provider's acceptance carries was retried, though a
    // 2xx says the provider took the request (fetchJson's own rule): the code could go out twice.
    if (answerCarriesFields) {
      unconfirmed.push([
        "a 200 answer without the expected fields",
        { status: 200, json: { unrelated: true } },
      ]);
    }

    it.each(notSent)("fails transiently, as not sent, on %s", async (_name, reply) => {
      stub.enqueue(reply);
      const failure = await sendFailure(sender.send(message));
      expect(failure.permanent).toBe(false);
      expect(failure.unconfirmed).toBe(false);
    });

    // Regression: these were transient, so the outbox retried them: a vendor that took each
    // request and answered after the timeout sent one code 8 times.
    it.each(unconfirmed)("leaves the send unconfirmed on %s", async (_name, reply) => {
      stub.enqueue(reply);
      const failure = await sendFailure(sender.send(message));
      expect(failure.permanent).toBe(false);
      expect(failure.unconfirmed).toBe(true);
    });

    // Regression: the senders gave up after 10 s, and a vendor answering after 11 s had taken
    // every request: each try was recorded failed and retried, and one code went out 8 times.
    it("waits past the former 10 s for an answer by default", async () => {
      const patient = createSender(stub.url, undefined);
      const before = stub.requests.length;
      vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
      try {
        stub.enqueue({ status: 500, json: {}, delayMs: 11_000 });
        const sending = sendFailure(patient.send(message));
        // the request crosses a real socket; the stub's delay and the sender's timeout are faked
        while (stub.requests.length === before) await new Promise((resolve) => setImmediate(resolve));
        await new Promise((resolve) => setImmediate(resolve));
        await vi.advanceTimersByTimeAsync(11_000);
        const failure = await sending;
        expect(failure.message).toContain("HTTP 500");
        expect(failure.unconfirmed).toBe(false);
      } finally {
        vi.useRealTimers();
        await patient.close?.();
      }
    });

    it("fails transiently, as not sent, when the connection is refused", async () => {
      const refusing = createSender(`http://127.0.0.1:${await closedPort()}`, TEST_TIMEOUT_MS);
      try {
        const failure = await sendFailure(refusing.send(message));
        expect(failure.permanent).toBe(false);
        expect(failure.unconfirmed).toBe(false);
        expect(failure.message).toContain("ECONNREFUSED");
      } finally {
        await refusing.close?.();
      }
    });
  });
}
