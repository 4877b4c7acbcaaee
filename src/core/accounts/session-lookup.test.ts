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
    const { token } = await t.engine.accounts.createSession(app, account, 60);

    const live = await lookupSession(t.engine.deps, app, token);
    expect(live).toMatchObject({ kind: "live", account: { id: account.id } });
    expect(await lookupSession(t.engine.deps, app, "sess_forged")).toEqual({ kind: "unknown" });

    t.clock.advanceSeconds(60);
    expect(await lookupSession(t.engine.deps, app, token)).toEqual({
      kind: "expired",
      accountId: account.id,
    });
    // an expired session still logs nobody in through the account service
    expect(await t.engine.accounts.resolveSession(app, token)).toBeNull();
  });

  it("finds no session of another app", async () => {
    t = await createTestEngine();
    const app = await t.app();
    const account = await t.engine.accounts.create({ app, email: "ann@example.com" });
    const { token } = await t.engine.accounts.createSession(app, account, 60);
    expect(await lookupSession(t.engine.deps, { ...app, id: "other" }, token)).toEqual({ kind: "unknown" });
  });
});
