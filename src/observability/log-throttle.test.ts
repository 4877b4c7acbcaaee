import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { FixedClock } from "../../test/fakes/fixed-clock.js";
import { createLogThrottle, type LogThrottle, type ThrottledLine } from "./log-throttle.js";

describe("the log throttle", () => {
  const clock = new FixedClock();
  let told: Array<Omit<ThrottledLine<string, string>, "detail"> & { detail: string }>;
  let throttle: LogThrottle<string, string>;

  beforeEach(() => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    told = [];
    throttle = createLogThrottle<string, string>({
      clock,
      intervalMs: 60_000,
      maxKeys: 2,
      laterLog: "later",
      tell: (line) => told.push(line),
    });
  });
  afterEach(() => {
    throttle.close();
    vi.useRealTimers();
  });

  it("tells a key's first occurrence at once and the rest of its interval at the interval's end", () => {
    for (let i = 0; i < 5; i++) throttle.occurred("request", "redis down", `#${i}`);
    expect(told).toEqual([{ log: "request", count: 1, atOccurrence: true, detail: "#0" }]);
    vi.advanceTimersByTime(60_000);
    expect(told[1]).toEqual({ log: "later", count: 4, atOccurrence: false, detail: "#4" });
  });

  it("forgets a key quiet for a whole interval, so its return is told at once", () => {
    throttle.occurred("request", "redis down", "a");
    vi.advanceTimersByTime(60_000);
    expect(vi.getTimerCount()).toBe(0);
    throttle.occurred("request", "redis down", "b");
    expect(told.map((line) => line.detail)).toEqual(["a", "b"]);
  });

  it("tracks at most maxKeys keys; further ones share one line an interval", () => {
    for (let i = 0; i < 10; i++) throttle.occurred("request", `text ${i}`, `text ${i}`);
    // two tracked keys, and one line for the first of the eight beyond them
    expect(told.map((line) => line.detail)).toEqual(["text 0", "text 1", "text 2"]);
    vi.advanceTimersByTime(60_000);
    expect(told[3]).toMatchObject({ count: 7, detail: "text 9", atOccurrence: false });
  });
});
