import { describe, expect, it } from "vitest";
import { newTimeOrderedId, newTimeOrderedSecret, sha256Hex, timeOrderedSecretKey } from "./ids.js";

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

describe("time-ordered secrets", () => {
  it("are keyed by their time in clear and the SHA-256 of the whole secret", () => {
    const secret = newTimeOrderedSecret("vt", 1_700_000_000_000);
    expect(secret).toMatch(/^vt_[0-9a-z]{9}[\w-]{32}$/);
    const key = timeOrderedSecretKey(secret);
    expect(key).toBe(`${secret.slice(3, 12)}${sha256Hex(secret)}`);
    expect(key).not.toContain(secret.slice(12));
  });

  it("keys of later secrets sort after earlier ones", () => {
    const keys = [1_000, 2_000, 3_000].map((ms) => timeOrderedSecretKey(newTimeOrderedSecret("vt", ms)));
    expect([...keys].sort()).toEqual(keys);
  });

  it("keys any other string (an older secret, a forgery) by its SHA-256 alone", () => {
    for (const other of ["vt_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "vt_x", "", "no-underscore"]) {
      expect(timeOrderedSecretKey(other)).toBe(sha256Hex(other));
    }
  });
});
