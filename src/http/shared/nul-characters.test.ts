import { describe, expect, it } from "vitest";
import { nulField } from "./nul-characters.js";

describe("nulField", () => {
  it("names the first field whose value or name holds a NUL, nested ones by their path", () => {
    expect(nulField({ channel: "email", to: "a\0b@example.com" })).toBe("to");
    expect(nulField({ profile: { name: "ok", nickname: ["x", "y\0"] } })).toBe("profile.nickname.1");
    expect(nulField({ "bad\0key": 1 })).toBe("bad\0key");
    expect(nulField("raw\0body")).toBe("body");
  });

  it("finds nothing in clean values, numbers, nulls and empty objects", () => {
    expect(nulField({ channel: "email", to: "ann@example.com", n: 5, none: null, list: [] })).toBeUndefined();
    expect(nulField(undefined)).toBeUndefined();
    expect(nulField(Object.create(null))).toBeUndefined();
    expect(nulField("clean")).toBeUndefined();
  });

  it("walks a body nested thousands of levels deep without running out of stack", () => {
    const depth = 50_000;
    const deep = JSON.parse(`${"[".repeat(depth)}"\\u0000"${"]".repeat(depth)}`);
    expect(nulField(deep)).toMatch(/^0(\.0)+$/);
  });
});
