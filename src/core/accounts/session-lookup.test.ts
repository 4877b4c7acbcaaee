import { afterEach, describe, expect, it } from "vitest";
import { createTestEngine, type TestEngine } from "../../../test/fakes/test-engine.js";
import { lookupSession } from "./session-lookup.js";

let t: TestEngine;
afterEach(async () => {
  await t?.close();
});

describe("lookupSession", () => {
  it("tells a live session from an expired and an unknown one", async () => {
    t = await createTestEngine();
    const app = await t.app();
    const account = await t.engine.accounts.create({ app, email: "ann@example.com" });
    const { token } = await t.engine.accounts.createSession(app, account, 60, "fresns");

    const live = await lookupSession(t.engine.deps, app, token, "fresns");
    expect(live).toMatchObject({ kind: "live", account: { id: account.id } });
    expect(await lookupSession(t.engine.deps, app, "sess_forged", "fresns")).toEqual({ kind: "unknown" });

    t.clock.advanceSeconds(60);
    expect(await lookupSession(t.engine.deps, app, token, "fresns")).toEqual({
      kind: "expired",
      accountId: account.id,
    });
    // an expired session still logs nobody in through the account service
    expect(await t.engine.accounts.resolveSession(app, token, "fresns")).toBeNull();
  });

  it("finds no session another face opened", async () => {
    t = await createTestEngine();
    const app = await t.app();
    const account = await t.engine.accounts.create({ app, email: "ann@example.com" });
    for (const kind of ["cloudbase", "idaas"] as const) {
      const { token } = await t.engine.accounts.createSession(app, account, 60, kind);
      expect(await lookupSession(t.engine.deps, app, token, "fresns")).toEqual({ kind: "unknown" });
      expect(await lookupSession(t.engine.deps, app, token, kind)).toMatchObject({ kind: "live" });
      expect(await t.engine.accounts.resolveSession(app, token, "fresns")).toBeNull();
      // nor ends it
      await t.engine.accounts.revokeSession(app, token, "fresns");
      expect(await t.engine.accounts.resolveSession(app, token, kind)).toMatchObject({ id: account.id });
    }
    // and only CloudBase's session turns over on a refresh
    const fresns = await t.engine.accounts.createSession(app, account, 60, "fresns");
    expect(await t.engine.accounts.rotateSession(app, fresns.token, 60, "cloudbase")).toBeNull();
    expect(await t.engine.accounts.resolveSession(app, fresns.token, "fresns")).toMatchObject({
      id: account.id,
    });
  });

  it("finds no session of another app", async () => {
    t = await createTestEngine();
    const app = await t.app();
    const account = await t.engine.accounts.create({ app, email: "ann@example.com" });
    const { token } = await t.engine.accounts.createSession(app, account, 60, "fresns");
    expect(await lookupSession(t.engine.deps, { ...app, id: "other" }, token, "fresns")).toEqual({
      kind: "unknown",
    });
  });
});
