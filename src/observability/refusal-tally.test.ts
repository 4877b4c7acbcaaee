import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { FixedClock } from "../../test/fakes/fixed-clock.js";
import { createRefusalTally, type RefusalTally } from "./refusal-tally.js";

describe("the refusal tally", () => {
  const clock = new FixedClock();
  let lines: Array<{ level: string; line: Record<string, unknown>; message: string | undefined }>;
  let tally: RefusalTally;
  const log = {
    info: (line: object, message?: string) =>
      lines.push({ level: "info", line: line as Record<string, unknown>, message }),
    warn: (line: object, message?: string) =>
      lines.push({ level: "warn", line: line as Record<string, unknown>, message }),
  };

  beforeEach(() => {
    vi.useFakeTimers({ toFake: ["setInterval", "clearInterval"] });
    lines = [];
    tally = createRefusalTally({ log, clock, intervalMs: 1_000, warnAbove: 10, maxKeys: 3 });
  });
  afterEach(() => {
    tally.close();
    vi.useRealTimers();
  });

  it("writes one line an interval with the counts by face, app and code, most first, then starts over", () => {
    tally.count("native", "default", "RATE_LIMITED");
    tally.count("fresns", "shop", 33201);
    tally.count("native", "default", "RATE_LIMITED");
    clock.advanceSeconds(1);
    vi.advanceTimersByTime(1_000);
    expect(lines).toEqual([
      {
        level: "info",
        message: "requests refused",
        line: {
          refused: 3,
          seconds: 1,
          refusals: [
            { face: "native", app: "default", code: "RATE_LIMITED", count: 2 },
            { face: "fresns", app: "shop", code: 33201, count: 1 },
          ],
        },
      },
    ]);
    vi.advanceTimersByTime(5_000);
    expect(lines).toHaveLength(1);
  });

  it("counts past its keys as `other`, and warns past the threshold", () => {
    for (let i = 0; i < 11; i++) tally.count("native", `app-${i % 5}`, "UNAUTHENTICATED");
    vi.advanceTimersByTime(1_000);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: "warn", line: { refused: 11, other: 4 } });
    expect(lines[0]?.line.refusals).toHaveLength(3);
  });

  it("tells what it holds when closed, and stops its timer", () => {
    tally.count("idaas", "-", "IDAAS.SDK.PARAM.0001");
    tally.close();
    expect(lines).toMatchObject([{ line: { refused: 1 } }]);
    expect(vi.getTimerCount()).toBe(0);
  });
});
