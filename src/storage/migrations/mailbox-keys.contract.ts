import { describe, expect, it } from "vitest";
import { otpError } from "../../../test/fakes/otp-error.js";
import type { AccountDirectory } from "../../core/ports.js";
import type { Account } from "../../core/types.js";
import { uniqueId } from "../contract/fixtures.contract.js";

// The accounts an earlier release could leave, for the migration that keys each mailbox to one
// account (SQLite 11, PostgreSQL 7), and what the directory must find after it; both backends'
// migration tests run this one scenario.

const account = (id: string, appId: string, email: string, createdAtMs: number): Account => ({
  id,
  appId,
  email,
  profile: {},
  createdAtMs,
  credentialVersion: 0,
});
const older = account("acc_older", "alpha", "Ann@example.com", 1_000);
const younger = account("acc_younger", "alpha", "ann@example.com", 2_000);
const bob = account("acc_bob", "beta", "Bob@example.com", 1_000);
// stored with the domain's root dot, or IDNA's ideographic full stop, which earlier versions kept
// (@see .scratch/diff17 finding 4, .scratch/diff17b finding 3)
const dotted = account("acc_dotted", "beta", "carol@example.com.", 1_000);
const stopped = account("acc_stopped", "beta", "dave@example\u3002com", 1_000);
// an ideographic full stop in the local part is no dot: another mailbox (@see .scratch/diff17c 3)
const lina = account("acc_lina", "beta", "li\u3002na@example.com", 1_000);

/** In the order to store them: the younger first, so the oldest by creation time gets the key, not the first row written. */
export const ACCOUNTS_BEFORE_MAILBOX_KEYS = [younger, older, bob, dotted, stopped, lina];

/** One account per mailbox, whatever the case; a younger one an earlier version let in is found by its exact spelling. */
export async function expectAccountsKeyedByMailbox(accounts: AccountDirectory): Promise<void> {
  expect(await accounts.findByContact("alpha", "email", "ANN@example.com")).toEqual(older);
  expect(await accounts.findByContact("alpha", "email", "Ann@example.com")).toEqual(older);
  expect(await accounts.findByContact("alpha", "email", "ann@example.com")).toEqual(younger);
  expect(await accounts.findByContact("beta", "email", "bob@example.com")).toEqual(bob);
  expect(await accounts.findByContact("beta", "email", "Carol@example.com")).toEqual(dotted);
  expect(await accounts.findByContact("beta", "email", "dave@example.com")).toEqual(stopped);
  expect(await accounts.findByContact("beta", "email", "li.na@example.com")).toBeNull();
  expect(await accounts.findByContact("beta", "email", "li\u3002na@example.com")).toEqual(lina);
  const third = account("acc_third", "alpha", "aNn@example.com", 3_000);
  expect((await otpError(accounts.create(third))).code).toBe("ACCOUNT_EXISTS");
}

/**
 * A store at the current schema that a release before the mailbox keys still writes to, as it
 * does while `verifyd migrate` runs beside it and until the restart to this build.
 */
export interface OlderServerFixture {
  /** the directory of the store as last opened */
  accounts(): AccountDirectory;
  /** inserts the account as such a release does: without email_key */
  insertAsOlderServer(account: Account): Promise<void>;
  /** moves the account to `email` as such a release does: its key left as it was */
  changeEmailAsOlderServer(appId: string, id: string, email: string): Promise<void>;
  /** closes the store and opens it as a server start does; returns what the start logged having keyed */
  restart(): Promise<{ keyed: number; released: number } | undefined>;
  close(): Promise<void>;
}

/** What a server start must make of the accounts such a release wrote. @see .scratch/rev-storage */
export function olderServerAccountsContract(name: string, open: () => Promise<OlderServerFixture>): void {
  describe(`accounts an older server wrote beside the mailbox keys, at a start: ${name}`, () => {
    const withStore = async (test: (store: OlderServerFixture, appId: string) => Promise<void>) => {
      const store = await open();
      try {
        await test(store, uniqueId("app"));
      } finally {
        await store.close();
      }
    };
    const newAccount = (appId: string, email: string, createdAtMs: number) =>
      account(uniqueId("acc"), appId, email, createdAtMs);

    // Regression: such an account was found by its exact spelling only, so a sign-up of the
    // folded spelling made a second account for its mailbox.
    it("finds an account an older server inserted in any case, and refuses its mailbox a second one", async () => {
      await withStore(async (store, appId) => {
        const mixed = newAccount(appId, "Mixed@Example.com", 1_000);
        const dotted = newAccount(appId, "Carol@example.com.", 1_000);
        await store.insertAsOlderServer(mixed);
        await store.insertAsOlderServer(dotted);

        const logged = await store.restart();

        const accounts = store.accounts();
        expect(await accounts.findByContact(appId, "email", "mixed@example.com")).toEqual(mixed);
        expect(await accounts.findByContact(appId, "email", "MIXED@EXAMPLE.COM")).toEqual(mixed);
        expect(await accounts.findByContact(appId, "email", "carol@example.com")).toEqual(dotted);
        const second = newAccount(appId, "mixed@example.com", 2_000);
        expect((await otpError(accounts.create(second))).code).toBe("ACCOUNT_EXISTS");
        expect(logged).toEqual({ keyed: 2, released: 0 });
        // Nothing left to key: the next start writes nothing.
        expect(await store.restart()).toBeUndefined();
      });
    });

    it("keys the oldest of a mailbox's accounts an older server inserted, and leaves a taken mailbox's unkeyed", async () => {
      await withStore(async (store, appId) => {
        const holder = newAccount(appId, "ann@example.com", 1_000);
        await store.accounts().create(holder);
        const annAgain = newAccount(appId, "Ann@example.com", 2_000);
        const danYounger = newAccount(appId, "Dan@example.com", 2_000);
        const danOlder = newAccount(appId, "DAN@example.com", 1_000);
        for (const each of [annAgain, danYounger, danOlder]) await store.insertAsOlderServer(each);

        const logged = await store.restart();

        const accounts = store.accounts();
        expect(await accounts.findByContact(appId, "email", "ANN@example.com")).toEqual(holder);
        expect(await accounts.findByContact(appId, "email", "ann@example.com")).toEqual(holder);
        expect(await accounts.findByContact(appId, "email", "Ann@example.com")).toEqual(annAgain);
        expect(await accounts.findByContact(appId, "email", "dan@example.com")).toEqual(danOlder);
        expect(await accounts.findByContact(appId, "email", "Dan@example.com")).toEqual(danYounger);
        expect(logged).toEqual({ keyed: 1, released: 0 });
        // The one left unkeyed is counted at no later start either.
        expect(await store.restart()).toBeUndefined();
      });
    });

    // Regression: the key stayed with the address the account left, refusing that mailbox a
    // sign-up, and the address it moved to was found by its exact spelling only.
    it("moves the key with an address an older server changed", async () => {
      await withStore(async (store, appId) => {
        const moved = newAccount(appId, "old@example.com", 1_000);
        await store.accounts().create(moved);
        await store.changeEmailAsOlderServer(appId, moved.id, "New@example.com");
        const oldMailbox = newAccount(appId, "Old@example.com", 2_000);
        await store.insertAsOlderServer(oldMailbox);

        const logged = await store.restart();

        const accounts = store.accounts();
        const movedNow = { ...moved, email: "New@example.com" };
        expect(await accounts.findByContact(appId, "email", "new@example.com")).toEqual(movedNow);
        expect(await accounts.findByContact(appId, "email", "old@example.com")).toEqual(oldMailbox);
        const second = newAccount(appId, "NEW@example.com", 3_000);
        expect((await otpError(accounts.create(second))).code).toBe("ACCOUNT_EXISTS");
        expect(logged).toEqual({ keyed: 2, released: 1 });
      });
    });
  });
}
