import { describe, expect, it } from "vitest";
import { FixedClock } from "../../test/fakes/fixed-clock.js";
import { startPurgeLoop } from "./purge-loop.js";

const settle = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A purge that removes the next of `batches` on each pass (then nothing), recording each pass. */
function scriptedPurge(batches: number[]) {
  const passes: number[] = [];
  return {
    passes,
    purge: async (nowMs: number) => {
      passes.push(nowMs);
      return batches.shift() ?? 0;
    },
  };
}

describe("the purge loop", () => {
  it("passes again at once while passes find rows, then rests", async () => {
    const { passes, purge } = scriptedPurge([500, 500, 120]);
    const loop = startPurgeLoop({
      purge,
      clock: new FixedClock(1_000),
      onError: () => {},
      restMs: 60_000,
      catchUpPauseMs: 1,
    });
    await settle(200);
    // three passes that removed rows, one that found nothing; the next waits out its rest
    expect(passes).toEqual([1_000, 1_000, 1_000, 1_000]);
    await loop.stop();
  });

  it("rests between passes that find nothing, and keeps going after a failed pass", async () => {
    const errors: unknown[] = [];
    let calls = 0;
    const loop = startPurgeLoop({
      purge: async () => {
        calls += 1;
        if (calls === 1) throw new Error("database is locked");
        return 0;
      },
      clock: new FixedClock(0),
      onError: (error) => errors.push(error),
      restMs: 40,
      catchUpPauseMs: 1,
    });
    await settle(150);
    await loop.stop();
    expect(errors).toHaveLength(1);
    // one pass at start and one per rest since: far fewer than catching up would run
    expect(calls).toBeGreaterThanOrEqual(3);
    expect(calls).toBeLessThanOrEqual(5);
  });

  it("stops after the pass in flight, and starts no other", async () => {
    let release: () => void = () => {};
    let calls = 0;
    const loop = startPurgeLoop({
      purge: () => {
        calls += 1;
        return new Promise<number>((resolve) => {
          release = () => resolve(500);
        });
      },
      clock: new FixedClock(0),
      onError: () => {},
      catchUpPauseMs: 0,
    });
    let stopped = false;
    const stopping = loop.stop().then(() => {
      stopped = true;
    });
    await settle(20);
    expect(stopped).toBe(false);
    release();
    await stopping;
    await settle(20);
    expect(calls).toBe(1);
  });
});
