import { describe, expect, it } from "vitest";
import { trimmed } from "./schemas.js";

describe("trimmed (Laravel's TrimStrings)", () => {
  it("takes whitespace, the byte-order mark and the zero-width space off either end only", () => {
    expect(trimmed(" \n\t\u00a0\ufeff\u200b 123 456 \u200b\r\n")).toBe("123 456");
    expect(trimmed("ann@example.com")).toBe("ann@example.com");
    expect(trimmed(" \u200b ")).toBe("");
  });

  // Regression: a regular expression anchored at the end was tried at every position of a run, so
  // one 16 KiB body of spaces held the event loop 1-2 s. @see fix review B 1
  it("is linear in a long run of whitespace inside the value", () => {
    const value = `a${" ".repeat(1_000_000)}a`;
    const started = performance.now();
    expect(trimmed(value)).toBe(value);
    expect(trimmed(`${value}${" ".repeat(1_000_000)}`)).toBe(value);
    // a quadratic scan of a million spaces takes minutes; a linear one a few milliseconds
    expect(performance.now() - started).toBeLessThan(2_000);
  });
});
