import { describe, expect, it } from "vitest";
import { FixedClock } from "../../../test/fakes/fixed-clock.js";
import type { OutboxStore } from "../ports.js";
import type { DeliveryRecord } from "../types.js";
import { createReceiptRecorder } from "./delivery-receipts.js";

const silent = { debug() {}, info() {}, warn() {}, error() {} };

/** An outbox whose deliveries appear after `matchAfter` lookups, like a markSent still committing. */
function outbox(matchAfter: number, fail = false) {
  const calls: { provider: string; providerMessageId: string; delivery: DeliveryRecord }[] = [];
  const store: Pick<OutboxStore, "recordReceipt"> = {
    async recordReceipt(provider, providerMessageId, delivery) {
      calls.push({ provider, providerMessageId, delivery });
      if (fail) throw new Error("database is locked");
      return calls.length > matchAfter;
    },
  };
  return { calls, store: store as OutboxStore };
}

describe("createReceiptRecorder", () => {
  it("records a receipt on the delivery it names", async () => {
    const { calls, store } = outbox(0);
    const clock = new FixedClock();
    const recorder = createReceiptRecorder({ outbox: store, clock, logger: silent, retryDelaysMs: [1] });
    expect(await recorder.record({ provider: "smsc", providerMessageId: "42", status: "delivered" })).toBe(
      true,
    );
    expect(calls).toEqual([
      {
        provider: "smsc",
        providerMessageId: "42",
        delivery: { provider: "smsc", status: "delivered", atMs: clock.nowMs() },
      },
    ]);
  });

  it("looks again when the receipt overtook the delivery record it names", async () => {
    const { calls, store } = outbox(2);
    const recorder = createReceiptRecorder({
      outbox: store,
      clock: new FixedClock(),
      logger: silent,
      retryDelaysMs: [1, 1, 1],
    });
    expect(
      await recorder.record({
        provider: "smsc",
        providerMessageId: "42",
        status: "failed",
        error: "UNDELIV",
      }),
    ).toBe(true);
    expect(calls).toHaveLength(3);
    expect(calls[2]?.delivery.error).toBe("UNDELIV");
  });

  it("gives up on a receipt for a message it never sent, and never throws", async () => {
    const unknown = outbox(Number.POSITIVE_INFINITY);
    const recorder = createReceiptRecorder({
      outbox: unknown.store,
      clock: new FixedClock(),
      logger: silent,
      retryDelaysMs: [1, 1],
    });
    expect(await recorder.record({ provider: "smsc", providerMessageId: "nope", status: "delivered" })).toBe(
      false,
    );
    expect(unknown.calls).toHaveLength(3);
    const broken = outbox(0, true);
    const failing = createReceiptRecorder({
      outbox: broken.store,
      clock: new FixedClock(),
      logger: silent,
      retryDelaysMs: [1],
    });
    expect(await failing.record({ provider: "smsc", providerMessageId: "42", status: "delivered" })).toBe(
      false,
    );
  });

  it("settles pending lookups when closed", async () => {
    const { store } = outbox(Number.POSITIVE_INFINITY);
    const recorder = createReceiptRecorder({
      outbox: store,
      clock: new FixedClock(),
      logger: silent,
      retryDelaysMs: [60_000],
    });
    const pending = recorder.record({ provider: "smsc", providerMessageId: "42", status: "delivered" });
    await new Promise((resolve) => setImmediate(resolve));
    recorder.close();
    expect(await pending).toBe(false);
  });
});
