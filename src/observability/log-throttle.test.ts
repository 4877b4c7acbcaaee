import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { FixedClock } from "../../test/fakes/fixed-clock.js";
import {
  createLogThrottle,
  createOutageLog,
  type LogThrottle,
  type OutageLog,
  type ThrottledLine,
} from "./log-throttle.js";

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

describe("the outage log of a background loop", () => {
  const clock = new FixedClock();
  let lines: Array<{ level: string; message: string | undefined; fields: Record<string, unknown> }>;
  let outage: OutageLog;

  beforeEach(() => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    lines = [];
    const record =
      (level: string) =>
      (fields: object, message?: string): void => {
        lines.push({ level, message, fields: fields as Record<string, unknown> });
      };
    outage = createOutageLog({
      clock,
      log: { error: record("error"), warn: record("warn"), info: record("info") },
      what: "purge",
    });
  });
  afterEach(() => {
    outage.close();
    vi.useRealTimers();
  });

  // Regression: a loop retrying every 200 ms wrote a line, with a stack, for every round (237 in
  // the 47 s of a full disk), and nothing when it worked again.
  it("tells the first failure, one reminder a minute with how many since, and the first round to work", () => {
    const away = new Error("store away");
    for (let round = 0; round < 300; round++) outage.failed(away);
    expect(lines).toEqual([{ level: "error", message: "purge failed", fields: { err: away } }]);
    clock.advanceSeconds(60);
    vi.advanceTimersByTime(60_000);
    expect(lines[1]).toEqual({
      level: "error",
      message: "purge still failing",
      fields: { err: away, suppressed: 299, outageMs: 60_000 },
    });
    for (let round = 0; round < 10; round++) outage.failed(away);
    clock.advanceSeconds(5);
    outage.succeeded();
    outage.succeeded();
    expect(lines.slice(2)).toEqual([
      { level: "info", message: "purge resumed", fields: { failures: 310, outageMs: 65_000 } },
    ]);
    // the reminder the last ten were waiting for is not written: the resumed line told them
    vi.advanceTimersByTime(120_000);
    expect(lines).toHaveLength(3);
    expect(vi.getTimerCount()).toBe(0);
    // a later outage starts over
    outage.failed(away);
    expect(lines[3]).toMatchObject({ message: "purge failed" });
  });

  it("writes nothing for a loop that keeps working", () => {
    for (let round = 0; round < 5; round++) outage.succeeded();
    expect(lines).toEqual([]);
  });
});
