import { afterEach, describe, expect, it } from "vitest";
import { createTestServer, type TestServer } from "../../../test/harness.js";
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

// Regression: a path no route serves with a NUL in it was refused as a field named `*` (CloudBase
// 400 invalid_argument, Fresns 30000) where any other unknown path is answered as unknown.
describe("an unknown path holding a NUL", () => {
  let t: TestServer | undefined;
  afterEach(async () => {
    await t?.close();
    t = undefined;
  });

  it("is answered as the unknown route it is, on every face", async () => {
    t = await createTestServer();
    const get = (url: string) => (t as TestServer).fastify.inject({ method: "GET", url });
    const cloudbase = await get("/auth/v1/user/me%00");
    expect(cloudbase.statusCode).toBe(404);
    expect(cloudbase.json()).toMatchObject({ error: "not_found", error_code: 4040 });
    expect((await get("/api/v2/account/detail%00")).statusCode).toBe(404);
    const idaas = await (t as TestServer).fastify.inject({
      method: "GET",
      url: "/api/v2/sdk/nowhere%00",
      headers: {
        "x-operating-sys-version": "windows10.1.1",
        "x-device-fingerprint": "156aysdna213sc50",
        "x-agent": "Mozilla/5.0",
        "x-client-id": "default",
      },
    });
    expect(idaas.json().error_code, idaas.body).toMatch(/PARAM\.1006$/);
    // (native's unknown paths were answered so before: its routes are outside the faces' plugins)
    const native = await get("/v1/nowhere%00");
    expect(native.statusCode).toBe(404);
    expect(native.json()).toMatchObject({ status: 404 });
    // a real route's parameter is still refused, naming it
    const param = await get("/v1/verifications/vf_x%00");
    expect(param.statusCode).toBe(400);
    expect(param.json()).toMatchObject({ code: "VALIDATION_FAILED", field: "id" });
  });
});
