import { beforeEach, describe, expect, it } from "vitest";
import { FixedClock } from "../../test/fakes/fixed-clock.js";
import { createOutageLog, type OutageLog } from "./outage-log.js";

describe("the outage log of a loop that retries on its own", () => {
  let clock: FixedClock;
  let lines: Array<{ level: string; message: string | undefined; fields: Record<string, unknown> }>;
  let outage: OutageLog;

  beforeEach(() => {
    clock = new FixedClock();
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

  // Regression: a loop retrying every 200 ms wrote a line, with a stack, for every round (237 in
  // the 47 s of a full disk), and nothing when it worked again.
  it("tells the first failure, one reminder a minute with how many since, and the end", () => {
    const away = new Error("store away");
    for (let round = 0; round < 300; round++) outage.failed(away);
    expect(lines).toEqual([{ level: "error", message: "purge failed", fields: { err: away } }]);
    clock.advanceSeconds(60);
    outage.failed(away);
    // the 299 between the two lines were not told one by one
    expect(lines[1]).toEqual({
      level: "error",
      message: "purge still failing",
      fields: { err: away, suppressed: 299, outageMs: 60_000 },
    });
    for (let round = 0; round < 10; round++) outage.failed(away);
    clock.advanceSeconds(5);
    outage.succeeded();
    outage.succeeded();
    outage.close();
    expect(lines.slice(2)).toEqual([
      { level: "info", message: "purge resumed", fields: { failures: 311, outageMs: 65_000 } },
    ]);
    // a later outage, a minute after the last line, starts over
    clock.advanceSeconds(60);
    outage.failed(away);
    expect(lines[3]).toMatchObject({ message: "purge failed" });
  });

  // Regression: under a backend up 1.5 s and down 1.5 s for 40 s, each flap opened an outage of its
  // own, a `failed` and a `resumed` line each time (68 lines for two loops), against the one start
  // line, one reminder a minute and one end line the README promises. @see the session review, finding 3
  it("tells a flapping backend as one outage: its start, its first end, then one end carrying the counts", () => {
    const away = new Error("store away");
    // a try every 500 ms; the backend down for 1.5 s, then up for 1.5 s, for 40 s, then up
    for (let elapsedMs = 0; elapsedMs < 70_000; elapsedMs += 500) {
      const down = elapsedMs < 40_000 && Math.floor(elapsedMs / 1_500) % 2 === 0;
      if (down) outage.failed(away);
      else outage.succeeded();
      clock.advanceSeconds(0.5);
    }
    expect(lines.map((line) => [line.message, line.fields])).toEqual([
      ["purge failed", { err: away }],
      // the first end is told at once: nothing yet says it is a flap
      ["purge resumed", { failures: 3, outageMs: 1_500 }],
      // the 13 later flaps' failures (3 s to 39.5 s), told at the first success a minute after
      // the first end, with the time from the first of them to the last end
      ["purge resumed", { failures: 12 * 3 + 2, outageMs: 37_000 }],
    ]);
  });

  it("reminds of a flapping backend's failures a minute after the last line, and tells a held-back end at close", () => {
    const fail = (error: string) => outage.failed(error);
    fail("a"); // 0 s
    clock.advanceSeconds(1);
    outage.succeeded(); // 1 s: told
    for (let second = 2; second < 59; second += 2) {
      clock.advanceSeconds(1);
      fail(`down at ${second}`);
      clock.advanceSeconds(1);
      outage.succeeded(); // held back: a minute has not passed since the last end
    }
    clock.advanceSeconds(2);
    fail("down at 61"); // a minute after the last line: the reminder
    clock.advanceSeconds(1);
    outage.succeeded({ waiting: 2 }); // 62 s: a minute after the last end, told
    clock.advanceSeconds(1);
    fail("down at 63");
    clock.advanceSeconds(1);
    outage.succeeded();
    outage.close();
    expect(lines.map((line) => [line.message, line.fields])).toEqual([
      ["purge failed", { err: "a" }],
      ["purge resumed", { failures: 1, outageMs: 1_000 }],
      // the failures from 2 s to 58 s, counted since the first of them
      ["purge still failing", { err: "down at 61", suppressed: 29, outageMs: 61_000 - 2_000 }],
      ["purge resumed", { failures: 30, outageMs: 62_000 - 2_000, waiting: 2 }],
      ["purge resumed", { failures: 1, outageMs: 1_000 }],
    ]);
  });

  it("writes nothing for a loop that keeps working", () => {
    for (let round = 0; round < 5; round++) outage.succeeded();
    outage.close();
    expect(lines).toEqual([]);
  });

  it("puts the caller's fields on the lines it writes, the latest failure's on a reminder", () => {
    outage.failed("a", { waiting: 3 });
    outage.failed("b", { waiting: 5 });
    clock.advanceSeconds(61);
    outage.failed("c", { waiting: 4 });
    outage.succeeded({ recorded: 6 });
    expect(lines.map((line) => [line.message, line.fields])).toEqual([
      ["purge failed", { err: "a", waiting: 3 }],
      ["purge still failing", { err: "c", waiting: 4, suppressed: 1, outageMs: 61_000 }],
      ["purge resumed", { failures: 3, outageMs: 61_000, recorded: 6 }],
    ]);
  });

  it("tells at close the failures no line told yet, and a clock stepped back as the minute gone by", () => {
    outage.failed("a");
    outage.failed("b");
    outage.close();
    expect(lines[1]).toMatchObject({ message: "purge still failing", fields: { err: "b", suppressed: 1 } });
    outage.close();
    expect(lines).toHaveLength(2);
    clock.advanceSeconds(-3_600);
    outage.failed("c");
    expect(lines[2]).toMatchObject({ message: "purge still failing", fields: { err: "c", suppressed: 0 } });
  });
});
