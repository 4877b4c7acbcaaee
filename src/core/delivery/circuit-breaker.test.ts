import { describe, expect, it } from "vitest";
import { FixedClock } from "../../../test/fakes/fixed-clock.js";
import { createCircuitBreakers } from "./circuit-breaker.js";

function breakers() {
  const clock = new FixedClock();
  return { clock, breakers: createCircuitBreakers({ clock, failureThreshold: 3, coolDownMs: 30_000 }) };
}

describe("circuit breakers", () => {
  it("stay closed below the threshold and forget failures after a success", () => {
    const { breakers: b } = breakers();
    b.failed("a");
    b.failed("a");
    b.succeeded("a");
    b.failed("a");
    b.failed("a");
    expect(b.permit("a")).toBe("use");
    expect(b.state("a")).toBe("closed");
  });

  it("open after the threshold of consecutive failures and skip the provider during the cool-down", () => {
    const { clock, breakers: b } = breakers();
    for (let i = 0; i < 3; i++) b.failed("a");
    expect(b.state("a")).toBe("open");
    expect(b.permit("a")).toBe("skip");
    expect(b.retryAtMs("a")).toBe(clock.nowMs() + 30_000);
    clock.advanceSeconds(29);
    expect(b.permit("a")).toBe("skip");
    // other providers are unaffected
    expect(b.permit("b")).toBe("use");
  });

  it("give a probe permit returned unused to the next caller, still half open", () => {
    const { clock, breakers: b } = breakers();
    for (let i = 0; i < 3; i++) b.failed("a");
    clock.advanceSeconds(30);
    expect(b.permit("a")).toBe("probe");
    b.released("a");
    expect(b.state("a")).toBe("half_open");
    expect(b.permit("a")).toBe("probe");
  });

  it("let exactly one probe through after the cool-down, and close when it succeeds", () => {
    const { clock, breakers: b } = breakers();
    for (let i = 0; i < 3; i++) b.failed("a");
    clock.advanceSeconds(30);
    expect(b.state("a")).toBe("half_open");
    expect(b.permit("a")).toBe("probe");
    expect(b.permit("a")).toBe("skip");
    b.succeeded("a");
    expect(b.state("a")).toBe("closed");
    expect(b.permit("a")).toBe("use");
  });

  // Regression: while a probe was in flight it reported the cool-down's end, already past, so every
  // other message on the route came back at once, and again a second later.
  it("report no time to come back while a probe is in flight, and the new cool-down after it fails", () => {
    const { clock, breakers: b } = breakers();
    for (let i = 0; i < 3; i++) b.failed("a");
    clock.advanceSeconds(30);
    expect(b.permit("a")).toBe("probe");
    clock.advanceSeconds(5);
    expect(b.retryAtMs("a")).toBeNull();
    b.failed("a");
    expect(b.retryAtMs("a")).toBe(clock.nowMs() + 30_000);
  });

  it("reopen for another cool-down when the probe fails", () => {
    const { clock, breakers: b } = breakers();
    for (let i = 0; i < 3; i++) b.failed("a");
    clock.advanceSeconds(30);
    expect(b.permit("a")).toBe("probe");
    b.failed("a");
    expect(b.state("a")).toBe("open");
    expect(b.permit("a")).toBe("skip");
    clock.advanceSeconds(30);
    expect(b.permit("a")).toBe("probe");
  });
});

describe("circuit breakers, as an operator reads them", () => {
  // @see log review: nothing said a provider was down, only each message's own failed try.
  it("tell once that a provider's circuit opened, not at each failed probe, and when it closed", () => {
    const clock = new FixedClock();
    const lines: Array<{ level: string; fields: object; message: string }> = [];
    const log = {
      warn: (fields: object, message: string) => lines.push({ level: "warn", fields, message }),
      info: (fields: object, message: string) => lines.push({ level: "info", fields, message }),
    };
    const b = createCircuitBreakers({ clock, failureThreshold: 3, coolDownMs: 30_000, log });
    for (let i = 0; i < 3; i++) b.failed("gateway");
    expect(lines).toEqual([
      {
        level: "warn",
        fields: { provider: "gateway", failures: 3, coolDownSeconds: 30 },
        message: expect.stringContaining("provider failing"),
      },
    ]);
    clock.advanceSeconds(30);
    expect(b.permit("gateway")).toBe("probe");
    b.failed("gateway"); // a failed probe reopens it quietly
    clock.advanceSeconds(30);
    expect(b.permit("gateway")).toBe("probe");
    b.succeeded("gateway");
    b.succeeded("gateway");
    expect(lines.map((line) => line.level)).toEqual(["warn", "info"]);
    expect(lines[1]).toMatchObject({
      fields: { provider: "gateway" },
      message: expect.stringContaining("provider back"),
    });
  });
});
