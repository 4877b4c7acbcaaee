import { scryptSync } from "node:crypto";
import { afterEach, describe, expect, it, vi } from "vitest";
import { otpError } from "../../../test/fakes/otp-error.js";
import { createTestEngine, type TestEngine } from "../../../test/fakes/test-engine.js";
import type { Account } from "../types.js";
import { hashPassword, needsRehash, verifyPassword } from "./passwords.js";

let t: TestEngine;
afterEach(() => {
  vi.restoreAllMocks();
  return t?.close();
});

const CLIENT = "203.0.113.5";

/** A hash of `password` under N=1024, scrypt's smallest N this build reads, as an import may store it. */
function weakHash(password: string): string {
  const salt = Buffer.from("an imported salt");
  const key = scryptSync(password, salt, 32, { N: 1_024, r: 8, p: 1 });
  return `scrypt$1024$8$1$${salt.toString("base64url")}$${key.toString("base64url")}`;
}

/** An account stored with a weak hash of "right", and a live Fresns session of it. */
async function importedAccount() {
  const app = await t.app();
  const account: Account = {
    id: "acc_imported",
    appId: app.id,
    email: "ann@example.com",
    passwordHash: weakHash("right"),
    profile: {},
    createdAtMs: t.clock.nowMs(),
    credentialVersion: 0,
  };
  await t.engine.deps.accounts.create(account);
  const session = await t.engine.accounts.createSession(app, account, 3600, "fresns");
  const replace = vi.spyOn(t.engine.deps.accounts, "replacePasswordHash");
  return { app, account, session, replace };
}

// Regression: hashes carry their parameters so that they can be raised, but nothing ever stored a
// password again, so an account imported (or made) under weaker ones kept them for good.
// @see .scratch/rehash
describe("a password login under weaker scrypt parameters", () => {
  it("stores the password under this build's, keeping the sessions and the credential version, once", async () => {
    t = await createTestEngine();
    const { app, account, session, replace } = await importedAccount();

    await t.engine.accounts.verifyPasswordLogin(app, account, "right", CLIENT);
    const stored = await t.engine.accounts.findById(app, account.id);
    const rehashed = stored?.passwordHash ?? "";
    expect(rehashed).toMatch(/^scrypt\$32768\$8\$1\$/);
    expect(needsRehash(rehashed)).toBe(false);
    expect(await verifyPassword("right", rehashed)).toBe(true);
    expect(stored).toEqual({ ...account, passwordHash: rehashed });
    expect(stored?.credentialVersion).toBe(0);
    expect(await t.engine.accounts.resolveSession(app, session.token, "fresns")).toEqual(stored);
    expect(replace).toHaveBeenCalledTimes(1);

    // the next login finds nothing to do: no write, the same hash
    await t.engine.accounts.verifyPasswordLogin(app, stored as Account, "right", CLIENT);
    expect(replace).toHaveBeenCalledTimes(1);
    expect((await t.engine.accounts.findById(app, account.id))?.passwordHash).toBe(rehashed);
  });

  it("does not store a wrong password, nor write anything", async () => {
    t = await createTestEngine();
    const { app, account, replace } = await importedAccount();
    expect((await otpError(t.engine.accounts.verifyPasswordLogin(app, account, "wrong", CLIENT))).code).toBe(
      "PASSWORD_INVALID",
    );
    expect(replace).not.toHaveBeenCalled();
    expect(await t.engine.accounts.findById(app, account.id)).toEqual(account);
  });

  it("leaves a new password set between the login's read and its rehash", async () => {
    t = await createTestEngine();
    const { app, account, replace } = await importedAccount();
    const reset = await t.engine.accounts.resetPassword(account, "new password");
    // the login compared against the hash it read before the reset
    await t.engine.accounts.verifyPasswordLogin(app, account, "right", CLIENT);
    expect(replace).toHaveBeenCalledTimes(1);
    expect(await t.engine.accounts.findById(app, account.id)).toEqual(reset);
  });

  it("lets the login stand when the rehash fails", async () => {
    t = await createTestEngine();
    const { app, account, replace } = await importedAccount();
    replace.mockRejectedValueOnce(new Error("database gone"));
    await t.engine.accounts.verifyPasswordLogin(app, account, "right", CLIENT);
    expect(await t.engine.accounts.findById(app, account.id)).toEqual(account);
    // and the next login tries again
    await t.engine.accounts.verifyPasswordLogin(app, account, "right", CLIENT);
    expect(needsRehash((await t.engine.accounts.findById(app, account.id))?.passwordHash ?? "")).toBe(false);
  });

  it("runs no rehash for a password stored under this build's parameters", async () => {
    t = await createTestEngine();
    const app = await t.app();
    const account = await t.engine.accounts.create({ app, email: "bob@example.com", password: "right" });
    const replace = vi.spyOn(t.engine.deps.accounts, "replacePasswordHash");
    await t.engine.accounts.verifyPasswordLogin(app, account, "right", CLIENT);
    expect(replace).not.toHaveBeenCalled();
    expect(await t.engine.accounts.findById(app, account.id)).toEqual(account);
    expect(needsRehash(await hashPassword("x"))).toBe(false);
  });
});
