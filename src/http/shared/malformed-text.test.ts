import { describe, expect, it } from "vitest";
import { malformedTextField } from "./malformed-text.js";

describe("malformedTextField", () => {
  it("names the first field whose value or name holds a NUL, nested ones by their path", () => {
    expect(malformedTextField({ channel: "email", to: "a\0b@example.com" })).toBe("to");
    expect(malformedTextField({ profile: { name: "ok", nickname: ["x", "y\0"] } })).toBe(
      "profile.nickname.1",
    );
    expect(malformedTextField({ "bad\0key": 1 })).toBe("bad\0key");
    expect(malformedTextField("raw\0body")).toBe("body");
  });

  it("names a field holding half of a surrogate pair, and lets a whole pair through", () => {
    expect(malformedTextField(JSON.parse('{"name":"\\ud800"}'))).toBe("name");
    expect(malformedTextField(JSON.parse('{"name":"x\\udc00y"}'))).toBe("name");
    expect(malformedTextField({ name: "emoji 😀, 中文, עברית" })).toBeUndefined();
  });

  it("finds nothing in clean values, numbers, nulls and empty objects", () => {
    expect(
      malformedTextField({ channel: "email", to: "ann@example.com", n: 5, none: null, list: [] }),
    ).toBeUndefined();
    expect(malformedTextField(undefined)).toBeUndefined();
    expect(malformedTextField(Object.create(null))).toBeUndefined();
    expect(malformedTextField("clean")).toBeUndefined();
  });

  it("walks a body nested thousands of levels deep without running out of stack", () => {
    const depth = 50_000;
    const deep = JSON.parse(`${"[".repeat(depth)}"\\u0000"${"]".repeat(depth)}`);
    expect(malformedTextField(deep)).toMatch(/^0(\.0)+$/);
  });
});
