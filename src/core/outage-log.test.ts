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
    // a later outage starts over
    outage.failed(away);
    expect(lines[3]).toMatchObject({ message: "purge failed" });
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
