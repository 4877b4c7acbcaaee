import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { OutboxStore } from "../../core/ports.js";
import type { DeliveryRecord, OutboxMessage } from "../../core/types.js";
import { baseTime, codeRecord, outboxFor, uniqueId } from "./fixtures.contract.js";

export interface OutboxStoreFixture {
  outbox: OutboxStore;
  /** queues a message the way a send does (the backend's own insert path) */
  enqueue(message: OutboxMessage): Promise<void>;
  deliveries(appId: string, verificationId: string): Promise<DeliveryRecord[]>;
  /** the sealed code as stored, to prove it is erased */
  sealedCodeOf(messageId: string): Promise<string | null>;
  close(): Promise<void>;
}

const LEASE_MS = 30_000;
const ALL = 10_000;

/** The OutboxStore contract: leased claims, one claimer per message, erasure once finished. */
export function outboxStoreContract(name: string, open: () => Promise<OutboxStoreFixture>): void {
  describe(`OutboxStore contract: ${name}`, () => {
    let fixture: OutboxStoreFixture;
    let outbox: OutboxStore;
    let now: number;
    beforeAll(async () => {
      fixture = await open();
      outbox = fixture.outbox;
    });
    afterAll(async () => {
      await fixture?.close();
    });
    // Each case starts with nothing due: what earlier cases left queued is claimed for a day.
    beforeEach(async () => {
      now = baseTime();
      while ((await outbox.claim(ALL, 86_400_000, now + 3_600_000)).length > 0) {
        // drained
      }
    });

    const message = (at: number, fields: Partial<OutboxMessage> = {}) =>
      outboxFor(codeRecord(uniqueId("app"), at), fields);
    const ids = (messages: OutboxMessage[]) => messages.map((item) => item.id).sort();

    it("claims a due message once per lease and again when the lease lapses", async () => {
      const queued = message(now);
      await fixture.enqueue(queued);
      expect(await outbox.claim(ALL, LEASE_MS, now - 1)).toEqual([]);
      expect(await outbox.claim(ALL, LEASE_MS, now)).toEqual([{ ...queued, attempts: 1 }]);
      expect(await outbox.claim(ALL, LEASE_MS, now + LEASE_MS - 1)).toEqual([]);
      // The worker that claimed it died: its lease lapses and another worker gets the message.
      expect(await outbox.claim(ALL, LEASE_MS, now + LEASE_MS)).toEqual([{ ...queued, attempts: 2 }]);
    });

    it("never gives one message to two concurrent claimers", async () => {
      const queued = Array.from({ length: 40 }, () => message(now));
      for (const item of queued) await fixture.enqueue(item);
      const claims = await Promise.all([1, 2, 3, 4].map(() => outbox.claim(15, LEASE_MS, now)));
      const claimed = claims.flat();
      expect(new Set(claimed.map((item) => item.id)).size).toBe(claimed.length);
      expect(ids(claimed)).toEqual(ids(queued));
    });

    it("erases the sealed code once sent, records the delivery and never claims it again", async () => {
      const queued = message(now);
      await fixture.enqueue(queued);
      const [claimed] = await outbox.claim(ALL, LEASE_MS, now);
      if (!claimed) throw new Error("not claimed");
      expect(await fixture.sealedCodeOf(queued.id)).toBe(queued.sealedCode);
      await outbox.markSent(claimed, {
        provider: "smtp",
        status: "sent",
        atMs: now + 5,
        providerMessageId: "id-1",
      });
      expect(await fixture.sealedCodeOf(queued.id)).toBeNull();
      expect(await fixture.deliveries(queued.appId, queued.verificationId)).toEqual([
        { provider: "smtp", status: "sent", atMs: now + 5, providerMessageId: "id-1" },
      ]);
      expect(await outbox.claim(ALL, LEASE_MS, now + 10 * LEASE_MS)).toEqual([]);
    });

    it("schedules a retry, keeping the sealed code", async () => {
      const queued = message(now);
      await fixture.enqueue(queued);
      const [claimed] = await outbox.claim(ALL, LEASE_MS, now);
      if (!claimed) throw new Error("not claimed");
      await outbox.markRetry(
        claimed,
        { provider: "smtp", status: "failed", atMs: now, error: "timeout" },
        now + 5000,
      );
      expect(await outbox.claim(ALL, LEASE_MS, now + 4999)).toEqual([]);
      expect(await outbox.claim(ALL, LEASE_MS, now + 5000)).toEqual([{ ...queued, attempts: 2 }]);
      expect(await fixture.deliveries(queued.appId, queued.verificationId)).toEqual([
        { provider: "smtp", status: "failed", atMs: now, error: "timeout" },
      ]);
    });

    it("postpones a message without recording anything: due again at the time given", async () => {
      const queued = message(now);
      await fixture.enqueue(queued);
      const [claimed] = await outbox.claim(ALL, LEASE_MS, now);
      if (!claimed) throw new Error("not claimed");
      const paused = {
        provider: "none",
        status: "failed",
        atMs: now,
        error: "every provider is paused",
      } as const;
      await outbox.markRetry(claimed, paused, now + 1_000);
      const [again] = await outbox.claim(ALL, LEASE_MS, now + 1_000);
      if (!again) throw new Error("not claimed again");
      await outbox.postpone(again, now + 5_000);
      expect(await outbox.claim(ALL, LEASE_MS, now + 4_999)).toEqual([]);
      expect((await outbox.claim(ALL, LEASE_MS, now + 5_000)).map((each) => each.id)).toEqual([queued.id]);
      expect(await fixture.sealedCodeOf(queued.id)).not.toBeNull();
      expect(await fixture.deliveries(queued.appId, queued.verificationId)).toEqual([paused]);
    });

    it("gives up on a failed message: erased and never claimed again", async () => {
      const queued = message(now);
      await fixture.enqueue(queued);
      const [claimed] = await outbox.claim(ALL, LEASE_MS, now);
      if (!claimed) throw new Error("not claimed");
      await outbox.markFailed(claimed, { provider: "none", status: "failed", atMs: now, error: "expired" });
      expect(await fixture.sealedCodeOf(queued.id)).toBeNull();
      expect(await outbox.claim(ALL, LEASE_MS, now + 10 * LEASE_MS)).toEqual([]);
    });

    it("updates a delivery from a provider's receipt", async () => {
      const queued = message(now);
      await fixture.enqueue(queued);
      const [claimed] = await outbox.claim(ALL, LEASE_MS, now);
      if (!claimed) throw new Error("not claimed");
      const provider = uniqueId("smpp");
      await outbox.markSent(claimed, { provider, status: "sent", atMs: now, providerMessageId: "m-9" });
      expect(
        await outbox.recordReceipt(provider, "m-9", { provider, status: "delivered", atMs: now + 100 }),
      ).toBe(true);
      expect(
        await outbox.recordReceipt(provider, "unknown", { provider, status: "delivered", atMs: now }),
      ).toBe(false);
      expect(await fixture.deliveries(queued.appId, queued.verificationId)).toEqual([
        { provider, status: "delivered", atMs: now + 100, providerMessageId: "m-9" },
      ]);
    });

    it("gives up on an unconfirmed message, whose delivery a later receipt still settles", async () => {
      const queued = message(now);
      await fixture.enqueue(queued);
      const [claimed] = await outbox.claim(ALL, LEASE_MS, now);
      if (!claimed) throw new Error("not claimed");
      const provider = uniqueId("gateway");
      await outbox.markFailed(claimed, {
        provider,
        status: "unconfirmed",
        atMs: now,
        error: "no answer within 18000 ms",
        providerMessageId: queued.id,
      });
      expect(await fixture.sealedCodeOf(queued.id)).toBeNull();
      expect(await outbox.claim(ALL, LEASE_MS, now + 10 * LEASE_MS)).toEqual([]);
      expect(
        await outbox.recordReceipt(provider, queued.id, { provider, status: "delivered", atMs: now + 1 }),
      ).toBe(true);
      expect(await fixture.deliveries(queued.appId, queued.verificationId)).toEqual([
        { provider, status: "delivered", atMs: now + 1, providerMessageId: queued.id },
      ]);
    });

    // Regression: an unconfirmed try ended its message, so a hanging primary lost every code; it
    // now fails over, and each later claim must name the providers never to be tried again.
    it("names on each later claim the providers whose tries went unconfirmed", async () => {
      const queued = message(now);
      await fixture.enqueue(queued);
      const [first] = await outbox.claim(ALL, LEASE_MS, now);
      if (!first) throw new Error("not claimed");
      expect(first.unconfirmedBy).toBeUndefined();
      const [gw, gw2] = [uniqueId("gw"), uniqueId("gw2")];
      const unconfirmed = {
        status: "unconfirmed" as const,
        providerMessageId: queued.id,
        error: "no answer",
      };
      await outbox.markRetry(first, { provider: gw, atMs: now, ...unconfirmed }, now + 1);
      const [second] = await outbox.claim(ALL, LEASE_MS, now + 1);
      expect(second?.unconfirmedBy).toEqual([gw]);
      if (!second) throw new Error("not claimed");
      // A plain failure does not count: that provider never had the message.
      await outbox.markRetry(
        second,
        { provider: gw2, status: "failed", atMs: now + 1, error: "503" },
        now + 2,
      );
      const [third] = await outbox.claim(ALL, LEASE_MS, now + 2);
      expect(third?.unconfirmedBy).toEqual([gw]);
      if (!third) throw new Error("not claimed");
      await outbox.markRetry(third, { provider: gw2, atMs: now + 2, ...unconfirmed }, now + 3);
      const [fourth] = await outbox.claim(ALL, LEASE_MS, now + 3);
      expect(fourth?.unconfirmedBy?.sort()).toEqual([gw, gw2].sort());
    });

    // Regression: a settle the store refused was never written again, so the claim lapsed and the
    // message went out twice through the same provider. The worker now writes it again until the
    // store takes it, past its lease if need be: such a late retry must not release the claim of
    // the worker that took the message meanwhile, or a third would claim and send it too.
    it("lets a late retry or postponement reschedule only the claim it ends, never a later one", async () => {
      const queued = message(now);
      await fixture.enqueue(queued);
      const [first] = await outbox.claim(ALL, LEASE_MS, now);
      if (!first) throw new Error("not claimed");
      // the first worker's lease lapsed while the store was away: another worker claims it
      const [second] = await outbox.claim(ALL, LEASE_MS, now + LEASE_MS);
      expect(second).toMatchObject({ id: queued.id, attempts: 2 });
      if (!second) throw new Error("not claimed again");
      const late = { provider: "gw", status: "failed", atMs: now + 1, error: "503" } as const;
      await outbox.markRetry(first, late, now + LEASE_MS);
      await outbox.postpone(first, now + LEASE_MS);
      // the second claim holds: nobody else gets the message while it is being sent
      expect(await outbox.claim(ALL, LEASE_MS, now + LEASE_MS + 1)).toEqual([]);
      // the late try is recorded all the same
      expect(await fixture.deliveries(queued.appId, queued.verificationId)).toEqual([late]);
      // and the second claim's own retry is what reschedules it
      await outbox.markRetry(second, { ...late, atMs: now + LEASE_MS + 2 }, now + LEASE_MS + 5);
      expect(await outbox.claim(ALL, LEASE_MS, now + LEASE_MS + 5)).toMatchObject([
        { id: queued.id, attempts: 3 },
      ]);
    });

    it("lets a late final outcome end the message whoever claimed it since, keeping every try's record", async () => {
      const queued = message(now);
      await fixture.enqueue(queued);
      const [first] = await outbox.claim(ALL, LEASE_MS, now);
      const [second] = await outbox.claim(ALL, LEASE_MS, now + LEASE_MS);
      if (!first || !second) throw new Error("not claimed twice");
      const sent = { provider: "gw", status: "sent", atMs: now + 1, providerMessageId: "g-1" } as const;
      await outbox.markSent(first, sent);
      expect(await fixture.sealedCodeOf(queued.id)).toBeNull();
      // the second try's outcome cannot bring the message back
      const failed = { provider: "gw", status: "failed", atMs: now + LEASE_MS + 1, error: "503" } as const;
      await outbox.markRetry(second, failed, now + LEASE_MS + 2);
      expect(await outbox.claim(ALL, LEASE_MS, now + 10 * LEASE_MS)).toEqual([]);
      expect(await fixture.deliveries(queued.appId, queued.verificationId)).toEqual([sent, failed]);
    });

    it("counts the messages waiting: queued or claimed, until sent or given up", async () => {
      // What earlier cases left queued (claimed for a day by beforeEach) counts too: compare with it.
      const before = await outbox.queuedCount();
      const queued = [message(now), message(now), message(now + 60_000)];
      for (const item of queued) await fixture.enqueue(item);
      expect(await outbox.queuedCount()).toBe(before + 3);
      const [first, second] = await outbox.claim(ALL, LEASE_MS, now);
      if (!first || !second) throw new Error("not claimed");
      // claimed is still waiting, and so is a retry
      expect(await outbox.queuedCount()).toBe(before + 3);
      await outbox.markRetry(
        first,
        { provider: "smtp", status: "failed", atMs: now, error: "timeout" },
        now + 1,
      );
      expect(await outbox.queuedCount()).toBe(before + 3);
      await outbox.markSent(second, { provider: "smtp", status: "sent", atMs: now });
      expect(await outbox.queuedCount()).toBe(before + 2);
      const [again] = await outbox.claim(ALL, LEASE_MS, now + 1);
      if (!again) throw new Error("not claimed again");
      await outbox.markFailed(again, { provider: "none", status: "failed", atMs: now, error: "expired" });
      expect(await outbox.queuedCount()).toBe(before + 1);
    });

    // Regression: a "sent" parked and retried after "delivered" turned it back. @see issue 7
    it("moves a delivery only forward: a late or repeated receipt never undoes a final status", async () => {
      const queued = message(now);
      await fixture.enqueue(queued);
      const [claimed] = await outbox.claim(ALL, LEASE_MS, now);
      if (!claimed) throw new Error("not claimed");
      const provider = uniqueId("gateway");
      await outbox.markSent(claimed, { provider, status: "sent", atMs: now, providerMessageId: "g-1" });
      const receipt = (status: DeliveryRecord["status"], atMs: number, error?: string) =>
        outbox.recordReceipt(provider, "g-1", { provider, status, atMs, ...(error ? { error } : {}) });
      // a repeated "sent" matches its delivery (nothing to retry) and changes nothing
      expect(await receipt("sent", now + 50)).toBe(true);
      expect(await fixture.deliveries(queued.appId, queued.verificationId)).toEqual([
        { provider, status: "sent", atMs: now, providerMessageId: "g-1" },
      ]);
      expect(await receipt("delivered", now + 100)).toBe(true);
      expect(await receipt("sent", now + 200)).toBe(true);
      expect(await receipt("failed", now + 300, "late report")).toBe(true);
      expect(await fixture.deliveries(queued.appId, queued.verificationId)).toEqual([
        { provider, status: "delivered", atMs: now + 100, providerMessageId: "g-1" },
      ]);
    });

    // Regression: a NUL in one provider answer failed a whole PostgreSQL settle batch, and every
    // message in it stayed queued and was sent again. @see issue 7
    it("settles the messages of a round even when the store refuses one record's value", async () => {
      const queued = Array.from({ length: 5 }, () => message(now));
      for (const item of queued) await fixture.enqueue(item);
      const claimed = await outbox.claim(ALL, LEASE_MS, now);
      expect(claimed).toHaveLength(5);
      // settled in one turn, so a batching store writes them together
      const outcomes = await Promise.allSettled(
        claimed.map((item, index) =>
          outbox.markSent(item, {
            provider: "gateway",
            status: "sent",
            atMs: now,
            providerMessageId: index === 2 ? "gw-\u0000-odd" : `gw-${index}`,
          }),
        ),
      );
      expect(outcomes.filter((outcome) => outcome.status === "fulfilled").length).toBeGreaterThanOrEqual(4);
      const odd = claimed[2]?.id;
      for (const item of queued.filter((each) => each.id !== odd)) {
        expect(await fixture.sealedCodeOf(item.id)).toBeNull();
        expect(await fixture.deliveries(item.appId, item.verificationId)).toHaveLength(1);
      }
      // none comes back to be sent again once its lease lapses, except perhaps the refused one
      const again = await outbox.claim(ALL, LEASE_MS, now + 2 * LEASE_MS);
      expect(again.filter((item) => item.id !== odd)).toEqual([]);
    });
  });
}
