import { afterEach, describe, expect, it } from "vitest";
import { createTestEngine, type TestEngine } from "../../../test/fakes/test-engine.js";
import { MAX_APP_ID_LENGTH, MAX_CLIENT_ID_LENGTH } from "./apps.js";

let t: TestEngine;
afterEach(() => t?.close());

describe("AppDirectory: ids no app can have", () => {
  // Regression: CloudBase looked up client ids of any length, each unknown one cached as a miss, so
  // one client's 16 KB made-up ids held ~150 MB until the cache's 10,000th entry cleared it, and
  // with it every real app's entry.
  it("answers a longer id or client id as no app without caching it, so real apps stay cached", async () => {
    t = await createTestEngine();
    const apps = t.engine.apps;
    expect(await apps.byId("default")).not.toBeNull();
    expect(apps.peekById("default")).not.toBeUndefined();
    const long = "x".repeat(MAX_CLIENT_ID_LENGTH + 1);
    for (let i = 0; i < 10_001; i++) {
      expect(await apps.byClientId(`${long}${i}`)).toBeNull();
    }
    expect(apps.peekByClientId(long)).toBeNull();
    expect(await apps.byId("y".repeat(MAX_APP_ID_LENGTH + 1))).toBeNull();
    expect(apps.peekById("default")).not.toBeUndefined();
  });

  it("still finds an app by a client id of the longest length", async () => {
    t = await createTestEngine();
    const clientId = "c".repeat(MAX_CLIENT_ID_LENGTH);
    await t.updateApp({ clientId });
    expect((await t.engine.apps.byClientId(clientId))?.id).toBe("default");
  });
});
