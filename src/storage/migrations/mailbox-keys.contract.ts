import { expect } from "vitest";
import { otpError } from "../../../test/fakes/otp-error.js";
import type { AccountDirectory } from "../../core/ports.js";
import type { Account } from "../../core/types.js";

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
