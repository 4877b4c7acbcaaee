import { describe, expect, it } from "vitest";
import { FixedClock } from "../../test/fakes/fixed-clock.js";
import type { PurgePass } from "./backend.js";
import { startPurgeLoop } from "./purge-loop.js";

const settle = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A purge whose passes say there is more `morePasses` times, then not, recording each pass. */
function scriptedPurge(morePasses: number) {
  const passes: number[] = [];
  return {
    passes,
    purge: async (nowMs: number) => {
      passes.push(nowMs);
      const more = passes.length <= morePasses;
      return { removed: more ? 500 : 120, more, workMs: 1 };
    },
  };
}

describe("the purge loop", () => {
  it("passes again soon while passes say there is more, then rests", async () => {
    const { passes, purge } = scriptedPurge(3);
    const loop = startPurgeLoop({
      purge,
      clock: new FixedClock(1_000),
      onError: () => {},
      restMs: 60_000,
      catchUpPauseMs: 1,
    });
    await settle(200);
    // three passes that left more, one that caught up; the next waits out its rest
    expect(passes).toEqual([1_000, 1_000, 1_000, 1_000]);
    await loop.stop();
  });

  it("pauses twice as long as a pass worked before the next, so catching up takes a third of the time", async () => {
    const startedAt: number[] = [];
    const loop = startPurgeLoop({
      // passes that worked 20 ms each (and waited for nothing)
      purge: async () => {
        startedAt.push(performance.now());
        return { removed: 500, more: true, workMs: 20 };
      },
      clock: new FixedClock(0),
      onError: () => {},
      catchUpPauseMs: 1,
    });
    await settle(400);
    await loop.stop();
    const gaps = startedAt.slice(1).map((at, i) => at - (startedAt[i] as number));
    expect(gaps.length).toBeGreaterThanOrEqual(3);
    // each pass starts 40 ms of pause after the last one ended
    for (const gap of gaps) expect(gap).toBeGreaterThanOrEqual(39);
  });

  it("rests between passes that find nothing, and keeps going after a failed pass", async () => {
    const errors: unknown[] = [];
    let calls = 0;
    const loop = startPurgeLoop({
      purge: async () => {
        calls += 1;
        if (calls === 1) throw new Error("database is locked");
        return { removed: 0, more: false, workMs: 0 };
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
        return new Promise<PurgePass>((resolve) => {
          release = () => resolve({ removed: 500, more: true, workMs: 1 });
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
