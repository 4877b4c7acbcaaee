import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { CounterStore } from "../../core/ports.js";
import { baseTime, uniqueId } from "./fixtures.contract.js";

export interface CounterStoreFixture {
  counters: CounterStore;
  close(): Promise<void>;
}

/** The CounterStore contract: windowed counters whose window starts at the first hit. */
export function counterStoreContract(name: string, open: () => Promise<CounterStoreFixture>): void {
  describe(`CounterStore contract: ${name}`, () => {
    let fixture: CounterStoreFixture;
    let counters: CounterStore;
    beforeAll(async () => {
      fixture = await open();
      counters = fixture.counters;
    });
    afterAll(async () => {
      await fixture?.close();
    });

    it("starts a window at the first hit and keeps its end while it runs", async () => {
      const now = baseTime();
      const appId = uniqueId("app");
      expect(await counters.hit(appId, "k", 60, now)).toEqual({ count: 1, resetAtMs: now + 60_000 });
      expect(await counters.hit(appId, "k", 60, now + 59_000)).toEqual({ count: 2, resetAtMs: now + 60_000 });
      expect(await counters.peek(appId, "k", now + 59_999)).toEqual({ count: 2, resetAtMs: now + 60_000 });
    });

    it("restarts an elapsed window at one", async () => {
      const now = baseTime();
      const appId = uniqueId("app");
      await counters.hit(appId, "k", 60, now);
      await counters.hit(appId, "k", 60, now);
      expect(await counters.peek(appId, "k", now + 60_000)).toEqual({ count: 0, resetAtMs: 0 });
      expect(await counters.hit(appId, "k", 60, now + 60_000)).toEqual({
        count: 1,
        resetAtMs: now + 120_000,
      });
    });

    it("peeks zero for an unknown counter and forgets a reset one", async () => {
      const now = baseTime();
      const appId = uniqueId("app");
      expect(await counters.peek(appId, "unknown", now)).toEqual({ count: 0, resetAtMs: 0 });
      await counters.hit(appId, "k", 60, now);
      await counters.reset(appId, "k");
      expect(await counters.peek(appId, "k", now)).toEqual({ count: 0, resetAtMs: 0 });
      await counters.reset(appId, "never-hit");
    });

    it("gives a hit back to the window it was counted in, never below zero, never to a later one", async () => {
      const now = baseTime();
      const appId = uniqueId("app");
      const end = now + 60_000;
      await counters.hit(appId, "k", 60, now);
      await counters.hit(appId, "k", 60, now);
      await counters.refund(appId, "k", end);
      expect(await counters.peek(appId, "k", now + 1000)).toEqual({ count: 1, resetAtMs: end });
      await counters.refund(appId, "k", end);
      await counters.refund(appId, "k", end);
      expect((await counters.peek(appId, "k", now + 1000)).count).toBe(0);
      expect(await counters.hit(appId, "k", 60, now + 2000)).toEqual({ count: 1, resetAtMs: end });
      // The window ended and another began: a late refund for the first takes nothing from it.
      expect(await counters.hit(appId, "k", 60, end)).toEqual({ count: 1, resetAtMs: end + 60_000 });
      await counters.refund(appId, "k", end);
      expect((await counters.peek(appId, "k", end + 1000)).count).toBe(1);
      await counters.refund(appId, "never-hit", end);
      expect((await counters.peek(appId, "never-hit", now)).count).toBe(0);
    });

    it("keeps each app's counters apart", async () => {
      const now = baseTime();
      const [a, b] = [uniqueId("app"), uniqueId("app")];
      await counters.hit(a, "shared-name", 60, now);
      expect((await counters.peek(b, "shared-name", now)).count).toBe(0);
    });

    it("never loses a hit under 20 concurrent hits", async () => {
      const now = baseTime();
      const appId = uniqueId("app");
      const states = await Promise.all(Array.from({ length: 20 }, () => counters.hit(appId, "k", 60, now)));
      expect(states.map((state) => state.count).sort((x, y) => x - y)).toEqual(
        Array.from({ length: 20 }, (_, index) => index + 1),
      );
    });
  });
}
