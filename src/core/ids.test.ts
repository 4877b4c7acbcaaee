import { describe, expect, it } from "vitest";
import { newTimeOrderedId } from "./ids.js";

describe("newTimeOrderedId", () => {
  it("sorts by the minting time, as text, across digit-count changes of the clock", () => {
    const times = [0, 35, 36, 1_700_000_000_000, 1_700_000_000_001, 99_999_999_999_999];
    const ids = times.map((ms) => newTimeOrderedId("msg", ms));
    expect([...ids].sort()).toEqual(ids);
  });

  it("carries 128 random bits after the time, so two ids of one millisecond differ", () => {
    const a = newTimeOrderedId("msg", 1_700_000_000_000);
    const b = newTimeOrderedId("msg", 1_700_000_000_000);
    expect(a).not.toBe(b);
    expect(a).toMatch(/^msg_[0-9a-z]{9}[\w-]{22}$/);
  });
});
