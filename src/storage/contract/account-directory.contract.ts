import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OtpError } from "../../core/errors.js";
import type { AccountDirectory, Session } from "../../core/ports.js";
import type { Account } from "../../core/types.js";
import { baseTime, hexHash, uniqueId } from "./fixtures.contract.js";

export interface AccountDirectoryFixture {
  accounts: AccountDirectory;
  close(): Promise<void>;
}

function account(appId: string, fields: Partial<Account> = {}): Account {
  return {
    id: uniqueId("acct"),
    appId,
    profile: {},
    createdAtMs: baseTime(),
    credentialVersion: 0,
    ...fields,
  };
}

function session(appId: string, accountId: string, expiresAtMs: number, credentialVersion = 0): Session {
  return { tokenHash: hexHash(), appId, accountId, expiresAtMs, credentialVersion };
}

async function errorCode(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
    return "resolved";
  } catch (error) {
    return error instanceof OtpError ? error.code : String(error);
  }
}

/** The AccountDirectory contract: unique contacts and usernames per app; sessions that expire. */
export function accountDirectoryContract(name: string, open: () => Promise<AccountDirectoryFixture>): void {
  describe(`AccountDirectory contract: ${name}`, () => {
    let fixture: AccountDirectoryFixture;
    let accounts: AccountDirectory;
    beforeAll(async () => {
      fixture = await open();
      accounts = fixture.accounts;
    });
    afterAll(async () => {
      await fixture?.close();
    });

    it("finds an account by email, phone, username and id", async () => {
      const appId = uniqueId("app");
      const created = account(appId, {
        email: "ann@example.com",
        phone: "+15551234567",
        username: "ann",
        passwordHash: "scrypt$x",
        profile: { nickname: "Ann" },
      });
      expect(await accounts.create(created)).toEqual(created);
      expect(await accounts.findByContact(appId, "email", "ann@example.com")).toEqual(created);
      expect(await accounts.findByContact(appId, "sms", "+15551234567")).toEqual(created);
      expect(await accounts.findByUsername(appId, "ann")).toEqual(created);
      expect(await accounts.findById(appId, created.id)).toEqual(created);
      expect(await accounts.findById(uniqueId("app"), created.id)).toBeNull();
      expect(await accounts.findByContact(appId, "email", "bob@example.com")).toBeNull();
    });

    it("refuses a taken email, phone or username in the same app with ACCOUNT_EXISTS", async () => {
      const appId = uniqueId("app");
      await accounts.create(
        account(appId, { email: "ann@example.com", phone: "+15551234567", username: "ann" }),
      );
      expect(await errorCode(accounts.create(account(appId, { email: "ann@example.com" })))).toBe(
        "ACCOUNT_EXISTS",
      );
      expect(await errorCode(accounts.create(account(appId, { phone: "+15551234567" })))).toBe(
        "ACCOUNT_EXISTS",
      );
      expect(await errorCode(accounts.create(account(appId, { username: "ann" })))).toBe("ACCOUNT_EXISTS");
      // Another app is another namespace; accounts without contacts never collide.
      expect(await errorCode(accounts.create(account(uniqueId("app"), { email: "ann@example.com" })))).toBe(
        "resolved",
      );
      expect(await errorCode(accounts.create(account(appId)))).toBe("resolved");
      expect(await errorCode(accounts.create(account(appId)))).toBe("resolved");
    });

    it("updates an account and refuses a contact another account has", async () => {
      const appId = uniqueId("app");
      const ann = await accounts.create(account(appId, { email: "ann@example.com" }));
      const bob = await accounts.create(account(appId, { email: "bob@example.com" }));
      const moved = { ...ann, email: "ann@new.example", phone: "+15550000000" };
      const changes = { email: "ann@new.example", phone: "+15550000000" };
      expect(await accounts.update(appId, ann.id, changes)).toEqual(moved);
      expect(await accounts.findById(appId, ann.id)).toEqual(moved);
      expect(await errorCode(accounts.update(appId, bob.id, { email: "ann@new.example" }))).toBe(
        "ACCOUNT_EXISTS",
      );
      expect(await accounts.findById(appId, bob.id)).toEqual(bob);
      expect(await accounts.update(appId, "acc_gone", { email: "gone@example.com" })).toBeNull();
      expect(await accounts.update(uniqueId("app"), ann.id, { email: "x@example.com" })).toBeNull();
    });

    // Regression: callers lower-case only an email's domain, and accounts were keyed by the exact
    // spelling, so ann@example.com found no account beside Ann@example.com and could sign up a
    // second one for the same mailbox. @see badinput F2
    it("finds an account by its email in any ASCII case, and keeps the email as written", async () => {
      const appId = uniqueId("app");
      const ann = await accounts.create(account(appId, { email: "Ann@example.com" }));
      expect(await accounts.findByContact(appId, "email", "ann@example.com")).toEqual(ann);
      expect(await accounts.findByContact(appId, "email", "ANN@EXAMPLE.COM")).toEqual(ann);
      expect(await accounts.findByContact(appId, "email", "Ann@example.com")).toEqual(ann);
      // Only ASCII letters fold, the same in every backend.
      const anne = await accounts.create(account(appId, { email: "ÄNNE@example.com" }));
      expect(await accounts.findByContact(appId, "email", "änne@example.com")).toBeNull();
      expect(await accounts.findByContact(appId, "email", "Änne@example.com")).toEqual(anne);
      expect(await accounts.findByContact(uniqueId("app"), "email", "ann@example.com")).toBeNull();
    });

    it("refuses an email another account has in another case with ACCOUNT_EXISTS", async () => {
      const appId = uniqueId("app");
      const ann = await accounts.create(account(appId, { email: "Ann@example.com" }));
      const bob = await accounts.create(account(appId, { email: "bob@example.com" }));
      expect(await errorCode(accounts.create(account(appId, { email: "aNN@example.com" })))).toBe(
        "ACCOUNT_EXISTS",
      );
      expect(await errorCode(accounts.update(appId, bob.id, { email: "ANN@example.com" }))).toBe(
        "ACCOUNT_EXISTS",
      );
      expect(await accounts.findById(appId, bob.id)).toEqual(bob);
      expect(await errorCode(accounts.create(account(uniqueId("app"), { email: "aNN@example.com" })))).toBe(
        "resolved",
      );
      // An account may change its own email's case, and is then found by either.
      const renamed = { ...ann, email: "ann@example.com" };
      expect(await accounts.update(appId, ann.id, { email: "ann@example.com" })).toEqual(renamed);
      expect(await accounts.findByContact(appId, "email", "Ann@example.com")).toEqual(renamed);
      // An email given up frees its mailbox for another account.
      await accounts.update(appId, ann.id, { email: "ann@new.example" });
      expect(await errorCode(accounts.update(appId, bob.id, { email: "ANN@example.com" }))).toBe("resolved");
      expect(await accounts.findByContact(appId, "email", "ann@example.com")).toEqual({
        ...bob,
        email: "ANN@example.com",
      });
    });

    it("writes only the fields given, so two edits from one read both stand", async () => {
      const appId = uniqueId("app");
      const ann = await accounts.create(
        account(appId, { email: "ann@example.com", username: "ann", passwordHash: "old-hash" }),
      );
      // Both made from the same read of ann: a password reset and a change of email.
      await Promise.all([
        accounts.update(appId, ann.id, { passwordHash: "new-hash" }),
        accounts.update(appId, ann.id, { email: "ann@new.example" }),
      ]);
      // The new password moved the credential version on, which ends the sessions opened before.
      const both = { ...ann, email: "ann@new.example", passwordHash: "new-hash", credentialVersion: 1 };
      expect(await accounts.findById(appId, ann.id)).toEqual(both);
      expect(await accounts.update(appId, ann.id, {})).toEqual(both);
    });

    it("keeps a deletion request until an update clears it", async () => {
      const appId = uniqueId("app");
      const ann = await accounts.create(account(appId, { email: "ann@example.com" }));
      expect((await accounts.findById(appId, ann.id))?.deletionRequestedAtMs).toBeUndefined();
      const waiting = { ...ann, deletionRequestedAtMs: baseTime() };
      expect(await accounts.update(appId, ann.id, { deletionRequestedAtMs: baseTime() })).toEqual(waiting);
      expect(await accounts.update(appId, ann.id, { phone: "+15550000001" })).toEqual({
        ...waiting,
        phone: "+15550000001",
      });
      expect(await accounts.update(appId, ann.id, { deletionRequestedAtMs: null })).toEqual({
        ...ann,
        phone: "+15550000001",
      });
      const createdWaiting = account(appId, { deletionRequestedAtMs: baseTime() });
      await accounts.create(createdWaiting);
      expect(await accounts.findById(appId, createdWaiting.id)).toEqual(createdWaiting);
    });

    it("lets exactly one of 10 concurrent sign-ups with one email through", async () => {
      const appId = uniqueId("app");
      const codes = await Promise.all(
        Array.from({ length: 10 }, () =>
          errorCode(accounts.create(account(appId, { email: "race@example.com" }))),
        ),
      );
      expect(codes.filter((code) => code === "resolved")).toHaveLength(1);
      expect(codes.filter((code) => code === "ACCOUNT_EXISTS")).toHaveLength(9);
    });

    it("finds a session until it expires, and not after it is deleted", async () => {
      const now = baseTime();
      const appId = uniqueId("app");
      const live = session(appId, uniqueId("acct"), now + 60_000, 3);
      await accounts.createSession(live);
      expect(await accounts.findSession(appId, live.tokenHash, now)).toEqual(live);
      expect(await accounts.findSession(uniqueId("app"), live.tokenHash, now)).toBeNull();
      expect(await accounts.findSession(appId, live.tokenHash, now + 60_000)).toBeNull();
      await accounts.deleteSession(appId, live.accountId, live.tokenHash);
      expect(await accounts.findSession(appId, live.tokenHash, now)).toBeNull();
    });

    // Regression: a sign-out found its session live, a refresh then moved the session to a new
    // token, and the delete by the old one matched nothing: the sign-out answered 200 and the
    // session lived on under the new refresh token. @see .scratch/accounts P1
    it("ends, by the token it was found by, a session a refresh rotated meanwhile, and no other", async () => {
      const now = baseTime();
      const appId = uniqueId("app");
      const accountId = uniqueId("acct");
      const found = session(appId, accountId, now + 60_000);
      const other = session(appId, accountId, now + 60_000);
      for (const each of [found, other]) await accounts.createSession(each);
      const next = { tokenHash: hexHash(), expiresAtMs: now + 120_000 };
      const rotated = await accounts.rotateSession(appId, found.tokenHash, next, now);
      expect(rotated?.tokenHash).toBe(next.tokenHash);
      // Another account's id, or another app's, ends nothing.
      await accounts.deleteSession(appId, uniqueId("acct"), found.tokenHash);
      await accounts.deleteSession(uniqueId("app"), accountId, found.tokenHash);
      expect(await accounts.findSession(appId, next.tokenHash, now)).toEqual(rotated);
      await accounts.deleteSession(appId, accountId, found.tokenHash);
      expect(await accounts.findSession(appId, next.tokenHash, now)).toBeNull();
      expect(
        await accounts.rotateSession(appId, next.tokenHash, { ...next, tokenHash: hexHash() }, now),
      ).toBeNull();
      expect(await accounts.findSession(appId, other.tokenHash, now)).toEqual(other);
    });

    it("ends a session rotated while its sign-out is under way, whichever lands first", async () => {
      const now = baseTime();
      const appId = uniqueId("app");
      const accountId = uniqueId("acct");
      for (let round = 0; round < 10; round++) {
        const found = session(appId, accountId, now + 60_000);
        await accounts.createSession(found);
        const next = { tokenHash: hexHash(), expiresAtMs: now + 120_000 };
        await Promise.all([
          accounts.rotateSession(appId, found.tokenHash, next, now),
          accounts.deleteSession(appId, accountId, found.tokenHash),
        ]);
        expect(await accounts.findSession(appId, next.tokenHash, now), `round ${round}`).toBeNull();
        expect(await accounts.findSession(appId, found.tokenHash, now), `round ${round}`).toBeNull();
      }
    });

    it("removes an account with its sessions, and leaves the rest", async () => {
      const now = baseTime();
      const appId = uniqueId("app");
      const ann = await accounts.create(account(appId, { email: "ann@example.com", username: "ann" }));
      const bob = await accounts.create(account(appId, { email: "bob@example.com" }));
      const annSession = session(appId, ann.id, now + 60_000);
      const bobSession = session(appId, bob.id, now + 60_000);
      for (const each of [annSession, bobSession]) await accounts.createSession(each);
      // Another app's id names nothing here.
      await accounts.delete(uniqueId("app"), ann.id);
      expect(await accounts.findById(appId, ann.id)).toEqual(ann);
      await accounts.delete(appId, ann.id);
      expect(await accounts.findById(appId, ann.id)).toBeNull();
      expect(await accounts.findSession(appId, annSession.tokenHash, now)).toBeNull();
      expect(await accounts.findById(appId, bob.id)).toEqual(bob);
      expect(await accounts.findSession(appId, bobSession.tokenHash, now)).toEqual(bobSession);
      // Its contact and username are free again; removing it twice is no error.
      await accounts.delete(appId, ann.id);
      expect(
        await errorCode(accounts.create(account(appId, { email: "ann@example.com", username: "ann" }))),
      ).toBe("resolved");
    });

    it("rotates a live session to exactly one of 10 concurrent refreshes, and an expired one to none", async () => {
      const now = baseTime();
      const appId = uniqueId("app");
      const live = session(appId, uniqueId("acct"), now + 60_000, 3);
      await accounts.createSession(live);
      const nexts = Array.from({ length: 10 }, () => ({ tokenHash: hexHash(), expiresAtMs: now + 120_000 }));
      const rotated = await Promise.all(
        nexts.map((next) => accounts.rotateSession(appId, live.tokenHash, next, now)),
      );
      const winners = rotated.filter((each) => each !== null);
      expect(winners).toHaveLength(1);
      const [winner] = winners;
      // The same session under its new token: account and credential version kept, expiry renewed.
      expect(winner).toEqual({ ...live, tokenHash: winner?.tokenHash, expiresAtMs: now + 120_000 });
      expect(nexts.map((next) => next.tokenHash)).toContain(winner?.tokenHash);
      expect(await accounts.findSession(appId, live.tokenHash, now)).toBeNull();
      expect(await accounts.findSession(appId, winner?.tokenHash ?? "", now)).toEqual(winner);
      const expired = { ...live, tokenHash: hexHash() };
      await accounts.createSession(expired);
      const next = { tokenHash: hexHash(), expiresAtMs: now + 120_000 };
      expect(await accounts.rotateSession(appId, expired.tokenHash, next, now + 60_000)).toBeNull();
      expect(await accounts.rotateSession(uniqueId("app"), expired.tokenHash, next, now)).toBeNull();
    });

    // Regression: a refresh token presented again after its rotation was refused, and the session
    // it had been rotated into lived on, a thief's if the thief refreshed first. Finding it is
    // what lets the refusal end it. @see RFC 9700 §4.14.2
    it("finds the live session a token was last rotated away from, and no other", async () => {
      const now = baseTime();
      const appId = uniqueId("app");
      const first = session(appId, uniqueId("acct"), now + 60_000, 2);
      const untouched = session(appId, first.accountId, now + 60_000);
      for (const each of [first, untouched]) await accounts.createSession(each);
      const second = { tokenHash: hexHash(), expiresAtMs: now + 120_000 };
      const rotated = await accounts.rotateSession(appId, first.tokenHash, second, now);
      expect(rotated).toEqual({ ...first, ...second });
      expect(await accounts.findSessionRotatedFrom(appId, first.tokenHash, now)).toEqual(rotated);
      // Not by its current token, a token never rotated, an unknown one, or in another app.
      expect(await accounts.findSessionRotatedFrom(appId, second.tokenHash, now)).toBeNull();
      expect(await accounts.findSessionRotatedFrom(appId, untouched.tokenHash, now)).toBeNull();
      expect(await accounts.findSessionRotatedFrom(appId, hexHash(), now)).toBeNull();
      expect(await accounts.findSessionRotatedFrom(uniqueId("app"), first.tokenHash, now)).toBeNull();
      // Nor once it has expired.
      expect(await accounts.findSessionRotatedFrom(appId, first.tokenHash, now + 120_000)).toBeNull();
      // Rotated again, it is found by the token it was rotated from last.
      const third = { tokenHash: hexHash(), expiresAtMs: now + 180_000 };
      await accounts.rotateSession(appId, second.tokenHash, third, now);
      expect(await accounts.findSessionRotatedFrom(appId, first.tokenHash, now)).toBeNull();
      expect(await accounts.findSessionRotatedFrom(appId, second.tokenHash, now)).toEqual({
        ...first,
        ...third,
      });
      // Ended, it is found no more.
      await accounts.deleteSession(appId, first.accountId, third.tokenHash);
      expect(await accounts.findSessionRotatedFrom(appId, second.tokenHash, now)).toBeNull();
    });

    // Regression: only the token the last rotation replaced led to the live session, so a thief
    // who refreshed twice before the owner came back kept it. @see RFC 9700 §4.14.2
    it("finds the live session of a chain across its rotations, and no other", async () => {
      const now = baseTime();
      const appId = uniqueId("app");
      const chain = uniqueId("chain");
      const first = { ...session(appId, uniqueId("acct"), now + 60_000, 2), chain };
      const unchained = session(appId, first.accountId, now + 60_000);
      for (const each of [first, unchained]) await accounts.createSession(each);
      expect(await accounts.findSessionOfChain(appId, chain, now)).toEqual(first);

      const second = { tokenHash: hexHash(), expiresAtMs: now + 120_000, chain };
      const third = { tokenHash: hexHash(), expiresAtMs: now + 180_000, chain };
      await accounts.rotateSession(appId, first.tokenHash, second, now);
      const rotated = await accounts.rotateSession(appId, second.tokenHash, third, now);
      expect(rotated).toEqual({ ...first, ...third });
      expect(await accounts.findSessionOfChain(appId, chain, now)).toEqual(rotated);
      // Not in another app, nor by another chain, nor once expired.
      expect(await accounts.findSessionOfChain(uniqueId("app"), chain, now)).toBeNull();
      expect(await accounts.findSessionOfChain(appId, uniqueId("chain"), now)).toBeNull();
      expect(await accounts.findSessionOfChain(appId, chain, now + 180_000)).toBeNull();

      // A session opened without one takes the chain its first rotation gives it.
      const given = uniqueId("chain");
      const next = { tokenHash: hexHash(), expiresAtMs: now + 120_000, chain: given };
      expect(await accounts.rotateSession(appId, unchained.tokenHash, next, now)).toEqual({
        ...unchained,
        ...next,
      });
      expect(await accounts.findSessionOfChain(appId, given, now)).toMatchObject(next);

      // Ended, it is found no more.
      await accounts.deleteSession(appId, first.accountId, third.tokenHash);
      expect(await accounts.findSessionOfChain(appId, chain, now)).toBeNull();
    });

    it("keeps, under a new password, a kept session that a refresh rotated meanwhile", async () => {
      const now = baseTime();
      const appId = uniqueId("app");
      const ann = await accounts.create(account(appId, { email: "ann@example.com", passwordHash: "old" }));
      const caller = session(appId, ann.id, now + 60_000);
      const other = session(appId, ann.id, now + 60_000);
      for (const each of [caller, other]) await accounts.createSession(each);
      // The caller's SDK refreshes between the change's session check and its write.
      const refreshed = await accounts.rotateSession(
        appId,
        caller.tokenHash,
        { tokenHash: hexHash(), expiresAtMs: now + 120_000 },
        now,
      );
      await accounts.update(appId, ann.id, { passwordHash: "new" }, { keepSessions: [caller.tokenHash] });
      expect(await accounts.findSession(appId, refreshed?.tokenHash ?? "", now)).toMatchObject({
        credentialVersion: 1,
      });
      expect(await accounts.findSession(appId, other.tokenHash, now)).toBeNull();
      // The other order: the change first, then the refresh, which carries the new version on.
      const again = await accounts.rotateSession(
        appId,
        refreshed?.tokenHash ?? "",
        { tokenHash: hexHash(), expiresAtMs: now + 180_000 },
        now,
      );
      expect(again).toMatchObject({ credentialVersion: 1, expiresAtMs: now + 180_000 });
    });

    it("ends the account's sessions but the kept with a new password, in the same write", async () => {
      const now = baseTime();
      const appId = uniqueId("app");
      const ann = await accounts.create(account(appId, { email: "ann@example.com", passwordHash: "old" }));
      const sessionOf = (app: string, accountId: string) => session(app, accountId, now + 60_000);
      const kept = sessionOf(appId, ann.id);
      const ended = [sessionOf(appId, ann.id), sessionOf(appId, ann.id)];
      const others = [sessionOf(appId, uniqueId("acct")), sessionOf(uniqueId("app"), ann.id)];
      for (const each of [kept, ...ended, ...others]) await accounts.createSession(each);
      // Other changes end nothing.
      await accounts.update(appId, ann.id, { phone: "+15550000002" }, { keepSessions: [] });
      expect(await accounts.findSession(appId, ended[0]!.tokenHash, now)).toEqual(ended[0]);
      const changed = await accounts.update(
        appId,
        ann.id,
        { passwordHash: "new" },
        { keepSessions: [kept.tokenHash] },
      );
      expect(changed?.credentialVersion).toBe(1);
      expect(await accounts.findSession(appId, kept.tokenHash, now)).toEqual({
        ...kept,
        credentialVersion: 1,
      });
      for (const each of ended) expect(await accounts.findSession(appId, each.tokenHash, now)).toBeNull();
      for (const each of others) {
        expect(await accounts.findSession(each.appId, each.tokenHash, now)).toEqual(each);
      }
      await accounts.update(appId, ann.id, { passwordHash: "newer" });
      expect(await accounts.findSession(appId, kept.tokenHash, now)).toBeNull();
    });

    it("replaces a password hash while it is the one given, and nothing else", async () => {
      const now = baseTime();
      const appId = uniqueId("app");
      const ann = await accounts.create(
        account(appId, { email: "ann@example.com", passwordHash: "weak", credentialVersion: 2 }),
      );
      const annSession = session(appId, ann.id, now + 60_000, 2);
      await accounts.createSession(annSession);
      // Another app's account with the same hash, named under the wrong app or named alone.
      const elsewhere = await accounts.create(account(uniqueId("app"), { passwordHash: "weak" }));
      expect(await accounts.replacePasswordHash(appId, elsewhere.id, "weak", "strong")).toBe(false);
      expect(await accounts.replacePasswordHash(elsewhere.appId, ann.id, "weak", "strong")).toBe(false);
      expect(await accounts.findById(appId, ann.id)).toEqual(ann);
      expect(await accounts.replacePasswordHash(appId, ann.id, "weak", "strong")).toBe(true);
      // the hash only: the version and the session stay
      expect(await accounts.findById(appId, ann.id)).toEqual({ ...ann, passwordHash: "strong" });
      expect(await accounts.findSession(appId, annSession.tokenHash, now)).toEqual(annSession);
      expect(await accounts.findById(elsewhere.appId, elsewhere.id)).toEqual(elsewhere);
      // A second replacement from the old hash, or of an unknown account: refused, nothing written.
      expect(await accounts.replacePasswordHash(appId, ann.id, "weak", "other")).toBe(false);
      expect(await accounts.replacePasswordHash(appId, uniqueId("acct"), "strong", "other")).toBe(false);
      expect(await accounts.findById(appId, ann.id)).toEqual({ ...ann, passwordHash: "strong" });
    });

    it("refuses to replace a password hash a new password replaced first, and leaves the row", async () => {
      const now = baseTime();
      const appId = uniqueId("app");
      const ann = await accounts.create(account(appId, { email: "ann@example.com", passwordHash: "weak" }));
      const kept = session(appId, ann.id, now + 60_000);
      await accounts.createSession(kept);
      // The owner's new password lands between a login's comparison and its rehash.
      const changed = await accounts.update(
        appId,
        ann.id,
        { passwordHash: "new" },
        { keepSessions: [kept.tokenHash] },
      );
      expect(await accounts.replacePasswordHash(appId, ann.id, "weak", "rehashed")).toBe(false);
      expect(await accounts.findById(appId, ann.id)).toEqual(changed);
      expect(await accounts.findSession(appId, kept.tokenHash, now)).toEqual({
        ...kept,
        credentialVersion: 1,
      });
      // An account without a password has no hash to replace.
      const bob = await accounts.create(account(appId, { email: "bob@example.com" }));
      expect(await accounts.replacePasswordHash(appId, bob.id, "weak", "rehashed")).toBe(false);
      expect(await accounts.findById(appId, bob.id)).toEqual(bob);
    });

    it("writes only while the account is at the credential version asked for", async () => {
      const appId = uniqueId("app");
      const ann = await accounts.create(account(appId, { email: "ann@example.com", passwordHash: "old" }));
      const owner = await accounts.update(
        appId,
        ann.id,
        { passwordHash: "owner" },
        { ifCredentialVersion: 0 },
      );
      expect(owner?.credentialVersion).toBe(1);
      // A change allowed by a session of version 0, landing after the owner's: refused, unwritten.
      expect(
        await accounts.update(appId, ann.id, { passwordHash: "thief" }, { ifCredentialVersion: 0 }),
      ).toBeNull();
      expect(
        await accounts.update(appId, ann.id, { email: "thief@evil.example" }, { ifCredentialVersion: 0 }),
      ).toBeNull();
      expect(await accounts.findById(appId, ann.id)).toEqual(owner);
      expect(
        (await accounts.update(appId, ann.id, { phone: "+15550000003" }, { ifCredentialVersion: 1 }))?.phone,
      ).toBe("+15550000003");
    });
  });
}
