import { scryptSync } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import { otpError } from "../../../test/fakes/otp-error.js";
import { createTestEngine, SECRET_A, type TestEngine } from "../../../test/fakes/test-engine.js";
import { OtpError } from "../errors.js";
import { sha256Hex } from "../ids.js";
import type { Logger } from "../ports.js";
import { CodeSecrets } from "../secrets.js";
import type { Account } from "../types.js";
import { createAccountService } from "./account-service.js";
import { verifyPassword } from "./passwords.js";

let t: TestEngine;
afterEach(() => t?.close());

const CLIENT = "203.0.113.5";
const BUDGET_RULE = "password_failures_ip:20/600s";

/**
 * An account whose password is stored under scrypt's smallest N this build reads, as an import
 * may store it: compared in a millisecond, where the default takes 50-100 ms, so that a test can
 * fail a few dozen logins quickly. Names that no account has are compared with the full decoy.
 */
async function accountWithCheapPassword(email: string, password: string): Promise<Account> {
  const app = await t.app();
  const account = await t.engine.accounts.create({ app, email });
  const salt = Buffer.from(`salt of ${email}`);
  const key = scryptSync(password, salt, 32, { N: 1_024, r: 8, p: 1 });
  return {
    ...account,
    passwordHash: `scrypt$1024$8$1$${salt.toString("base64url")}$${key.toString("base64url")}`,
  };
}

/** The login lockout stops at 5 failures per account: 20 failures take 4 accounts. */
async function failTwentyTimes(clientOf: (n: number) => string): Promise<void> {
  const app = await t.app();
  for (let each = 0; each < 4; each++) {
    const account = await accountWithCheapPassword(`user${each}@example.com`, "right");
    for (let i = 0; i < 5; i++) {
      const refused = await otpError(
        t.engine.accounts.verifyPasswordLogin(app, account, "guess", clientOf(each * 5 + i)),
      );
      expect(refused.code).toBe("PASSWORD_INVALID");
    }
  }
}

// Regression: the lockout counted per name only, so each made-up name was a fresh budget, and one
// client's flood of them kept scrypt busy for everyone (a real login took 5-8 s instead of 0.1 s).
// @see .scratch/rev-crypto/flood3.mjs
describe("the client's budget of failed passwords", () => {
  it("refuses one client's 21st failed password in 10 minutes, whatever names it tries, before any hash", async () => {
    t = await createTestEngine();
    const app = await t.app();
    const { accounts } = t.engine;
    const ann = await accountWithCheapPassword("ann@example.com", "ann-right");
    const bob = await accountWithCheapPassword("bob@example.com", "bob-right");
    const carl = await accountWithCheapPassword("carl@example.com", "carl-right");
    const dan = await accountWithCheapPassword("dan@example.com", "dan-right");

    // every kind of password comparison counts on one budget: a known account's login, a
    // re-verification's password, and names no account has
    for (let i = 0; i < 5; i++) {
      const proof = { password: "guess" };
      for (const refused of [
        await otpError(accounts.verifyPasswordLogin(app, ann, "guess", CLIENT)),
        await otpError(t.engine.reverify({ app, account: bob, proof, clientIp: CLIENT })),
        await otpError(accounts.verifyPasswordLogin(app, carl, "guess", CLIENT)),
      ]) {
        expect(refused.code).toBe("PASSWORD_INVALID");
      }
    }
    for (let i = 0; i < 5; i++) {
      const refused = await otpError(
        accounts.refuseUnknownLogin(app, { username: `nobody${i}` }, "x", CLIENT),
      );
      expect(refused.code).toBe("PASSWORD_INVALID");
    }

    // With the line of hashes full, a comparison would be refused as busy: the client's refusal
    // comes first, for a made-up name and for a right password alike, so it runs no hash and takes
    // no place in line (and tells nothing of which names exist). Two slow comparisons (p=4, four
    // times the default's work: some 0.2-0.5 s) hold both slots while 32 quick ones wait behind.
    const slow = `scrypt$32768$8$4$${Buffer.alloc(16, 1).toString("base64url")}$${Buffer.alloc(32).toString("base64url")}`;
    const cheap = dan.passwordHash as string;
    const lineFull = [slow, slow, ...Array(32).fill(cheap)].map((stored) => verifyPassword("x", stored));
    const unknown = await otpError(
      accounts.refuseUnknownLogin(app, { username: "nobody-else" }, "x", CLIENT),
    );
    const known = await otpError(accounts.verifyPasswordLogin(app, dan, "dan-right", CLIENT));
    // (the line is still full, so it was when those were refused)
    expect((await otpError(verifyPassword("x", cheap))).details.rule).toBe("password_hashes_busy");
    for (const refused of [unknown, known]) {
      expect(refused.code).toBe("RATE_LIMITED");
      expect(refused.details).toEqual({ rule: BUDGET_RULE, retryAfterSeconds: 600 });
    }
    await Promise.all(lineFull);

    // another client is not held up by this one's failures, nor is an internal call (no client)
    await accounts.verifyPasswordLogin(app, dan, "dan-right", "203.0.113.6");
    const elsewhere = await otpError(
      accounts.refuseUnknownLogin(app, { username: "nobody-else" }, "x", "203.0.113.6"),
    );
    expect(elsewhere.code).toBe("PASSWORD_INVALID");
    await accounts.verifyPasswordLogin(app, dan, "dan-right");

    // the budget ends with its window
    t.clock.advanceSeconds(600);
    await accounts.verifyPasswordLogin(app, dan, "dan-right", CLIENT);
  });

  it("counts an IPv6 client by its /64", async () => {
    t = await createTestEngine();
    const app = await t.app();
    const eve = await accountWithCheapPassword("eve@example.com", "eve-right");
    await failTwentyTimes((n) => `2001:db8:1:2::${n + 1}`);
    const sameNetwork = await otpError(
      t.engine.accounts.verifyPasswordLogin(app, eve, "eve-right", "2001:db8:1:2:ffff::1"),
    );
    expect(sameNetwork.details.rule).toBe(BUDGET_RULE);
    await t.engine.accounts.verifyPasswordLogin(app, eve, "eve-right", "2001:db8:1:3::1");
  });

  it("counts only failures: a right password and a locked account's refusal give their place back", async () => {
    t = await createTestEngine();
    const app = await t.app();
    const { accounts } = t.engine;
    const ann = await accountWithCheapPassword("ann@example.com", "ann-right");
    const bob = await accountWithCheapPassword("bob@example.com", "bob-right");
    for (let i = 0; i < 5; i++) await otpError(accounts.verifyPasswordLogin(app, bob, "guess", CLIENT));
    for (let i = 0; i < 3; i++) {
      expect((await otpError(accounts.verifyPasswordLogin(app, bob, "bob-right", CLIENT))).code).toBe(
        "ACCOUNT_LOCKED",
      );
    }
    for (let i = 0; i < 6; i++) await accounts.verifyPasswordLogin(app, ann, "ann-right", CLIENT);
    await t.engine.reverify({ app, account: ann, proof: { password: "ann-right" }, clientIp: CLIENT });
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 4; i++) await otpError(accounts.verifyPasswordLogin(app, ann, "guess", CLIENT));
      // (a right password also ends the account's lockout count)
      await accounts.verifyPasswordLogin(app, ann, "ann-right", CLIENT);
    }
    // 17 failures so far: 3 more are still compared, the 21st is not
    for (let i = 0; i < 3; i++) {
      const refused = await otpError(accounts.verifyPasswordLogin(app, ann, "guess", CLIENT));
      expect(refused.code).toBe("PASSWORD_INVALID");
    }
    const past = await otpError(accounts.verifyPasswordLogin(app, ann, "ann-right", CLIENT));
    expect(past).toMatchObject({ code: "RATE_LIMITED", details: { rule: BUDGET_RULE } });
  });
});

// Regression: a name no account has was locked out by the spelling a face passed, where the
// account look-up folds an email's ASCII capitals: five wrong passwords as x@ and one as X@ was
// locked for an account and refused as wrong for none, which told whether the account exists.
// And a code login that registers (Fresns login-or-register) had no lockout at all for a new
// address, where an account's locks after 5 failures: the sixth answer told the two apart.
describe("the lockout of a name no account has", () => {
  const wrongCode = async (): Promise<never> => {
    throw new OtpError("CODE_INVALID");
  };

  it("counts every ASCII case of an email as one name, as the account look-up reads them", async () => {
    t = await createTestEngine();
    const app = await t.app();
    const { accounts } = t.engine;
    for (let i = 0; i < 5; i++) {
      const refused = await otpError(
        accounts.refuseUnknownLogin(app, { channel: "email", address: "zed@example.com" }, "guess", CLIENT),
      );
      expect(refused.code).toBe("PASSWORD_INVALID");
    }
    const respelled = { channel: "email", address: "ZED@example.com" } as const;
    expect((await otpError(accounts.refuseUnknownLogin(app, respelled, "guess", CLIENT))).code).toBe(
      "ACCOUNT_LOCKED",
    );
    // a username is the name as given, as the look-up matches it
    for (let i = 0; i < 5; i++) await otpError(accounts.refuseUnknownLogin(app, { username: "zed" }, "x"));
    expect((await otpError(accounts.refuseUnknownLogin(app, { username: "Zed" }, "x"))).code).toBe(
      "PASSWORD_INVALID",
    );
  });

  it("locks a code login to a new address after 5 failures, even with the right code, as an account's", async () => {
    t = await createTestEngine();
    const app = await t.app();
    const { accounts } = t.engine;
    const nobody = { channel: "email", address: "Nobody@example.com" } as const;
    for (let i = 0; i < 5; i++) {
      expect((await otpError(accounts.underUnknownLoginLockout(app, nobody, wrongCode))).code).toBe(
        "CODE_INVALID",
      );
    }
    let ran = false;
    const rightCode = async () => {
      ran = true;
      return "signed in";
    };
    const lower = { channel: "email", address: "nobody@example.com" } as const;
    const locked = await otpError(accounts.underUnknownLoginLockout(app, lower, rightCode));
    expect(locked).toMatchObject({ code: "ACCOUNT_LOCKED", details: { retryAfterSeconds: 3600 } });
    expect(ran).toBe(false);
    // one count with the name's wrong passwords, as an account's codes and passwords share one
    expect((await otpError(accounts.refuseUnknownLogin(app, lower, "guess"))).code).toBe("ACCOUNT_LOCKED");

    t.clock.advanceSeconds(3600);
    for (let i = 0; i < 4; i++) await otpError(accounts.underUnknownLoginLockout(app, lower, wrongCode));
    expect(await accounts.underUnknownLoginLockout(app, lower, rightCode)).toBe("signed in");
    // a success clears the count
    for (let i = 0; i < 5; i++) await otpError(accounts.underUnknownLoginLockout(app, lower, wrongCode));
    expect((await otpError(accounts.underUnknownLoginLockout(app, lower, wrongCode))).code).toBe(
      "ACCOUNT_LOCKED",
    );
  });
});

// Regression: a refresh token presented again after its rotation was refused, and the session it
// had been rotated into lived on. The replay ends it; the log says so, naming no token.
// @see RFC 9700 §4.14.2
describe("a rotated refresh token presented again", () => {
  it("ends the session it was rotated into and logs one warning naming the app and account", async () => {
    t = await createTestEngine();
    const app = await t.app();
    const warnings: { fields: object; message: string | undefined }[] = [];
    const quiet = () => {};
    const logger: Logger = {
      debug: quiet,
      info: quiet,
      error: quiet,
      warn: (fields, message) => warnings.push({ fields, message }),
    };
    const { accounts: directory, counters } = t.backend;
    const accounts = createAccountService({
      accounts: directory,
      counters,
      clock: t.clock,
      logger,
      secrets: new CodeSecrets([SECRET_A]),
    });
    const ann = await accounts.create({ app, email: "ann@example.com" });
    const first = await accounts.createSession(app, ann, 3600, "cloudbase");
    const second = await accounts.rotateSession(app, first.token, 3600, "cloudbase");
    expect(second?.account.id).toBe(ann.id);
    expect(warnings).toEqual([]);

    // (past the 30 s in which a retried refresh rotates the session once more)
    t.clock.advanceSeconds(31);
    expect(await accounts.rotateSession(app, first.token, 3600, "cloudbase")).toBeNull();

    expect(await accounts.resolveSession(app, second?.session.token ?? "", "cloudbase")).toBeNull();
    expect(warnings).toEqual([
      {
        fields: { appId: app.id, accountId: ann.id },
        message: "a rotated refresh token was used again; its session is ended",
      },
    ]);
    // A token no session was rotated from is refused, and logs nothing.
    expect(await accounts.rotateSession(app, first.token, 3600, "cloudbase")).toBeNull();
    expect(await accounts.rotateSession(app, "rt_made-up", 3600, "cloudbase")).toBeNull();
    expect(warnings).toHaveLength(1);
  });
});

// Regression: a token that named a live session's chain ended that session whatever its secret
// part held, and logged a theft, so that anyone who saw a refresh token's first 26 characters
// could sign its owner out. Now only a token whose MAC verifies is taken as issued.
// @see .scratch review: a made-up CloudBase refresh token ends the real session
describe("a made-up refresh token naming a real chain", () => {
  /** The account service over the test engine's stores under `secrets`, logging its warnings. */
  async function serviceUnder(secrets: string[]) {
    const warnings: string[] = [];
    const quiet = () => {};
    const logger: Logger = {
      debug: quiet,
      info: quiet,
      error: quiet,
      warn: (_fields, message) => warnings.push(message ?? ""),
    };
    const { accounts: directory, counters } = t.backend;
    const service = createAccountService({
      accounts: directory,
      counters,
      clock: t.clock,
      logger,
      secrets: new CodeSecrets(secrets),
    });
    return { service, warnings };
  }

  it("is refused by a refresh and a sign-out, and ends nothing, logging no theft", async () => {
    t = await createTestEngine();
    const app = await t.app();
    const { service: accounts, warnings } = await serviceUnder([SECRET_A]);
    const ann = await accounts.create({ app, email: "ann@example.com" });
    const first = await accounts.createSession(app, ann, 3600, "cloudbase");
    const rotated = await accounts.rotateSession(app, first.token, 3600, "cloudbase");
    const live = rotated?.session.token ?? "";
    t.clock.advanceSeconds(31);

    const named = live.slice(0, "rt_".length + 22 + 1);
    const madeUp = [
      `${named}forged`,
      `${named}x`,
      // the shape of a real one's secret part, and the shape of one minted before the MAC
      `${named}${"A".repeat(32)}`,
      `${live.slice(0, -1)}${live.endsWith("A") ? "B" : "A"}`,
    ];
    for (const token of madeUp) {
      expect(await accounts.rotateSession(app, token, 3600, "cloudbase")).toBeNull();
      await accounts.revokeSession(app, token, "cloudbase");
    }
    expect((await accounts.resolveSession(app, live, "cloudbase"))?.id).toBe(ann.id);
    expect(warnings).toEqual([]);
    // while the token it really replaced still ends it
    expect(await accounts.rotateSession(app, first.token, 3600, "cloudbase")).toBeNull();
    expect(await accounts.resolveSession(app, live, "cloudbase")).toBeNull();
    expect(warnings).toEqual(["a rotated refresh token was used again; its session is ended"]);
  });

  it("keeps catching, after a secret's rotation, a token issued under the previous secret", async () => {
    t = await createTestEngine();
    const app = await t.app();
    const before = await serviceUnder([SECRET_A]);
    const ann = await before.service.create({ app, email: "ann@example.com" });
    const first = await before.service.createSession(app, ann, 3600, "cloudbase");
    const second = await before.service.rotateSession(app, first.token, 3600, "cloudbase");

    const { service: after } = await serviceUnder(["secret-b-0123456789abcdef", SECRET_A]);
    const third = await after.rotateSession(app, second?.session.token ?? "", 3600, "cloudbase");
    const live = third?.session.token ?? "";
    expect(await after.resolveSession(app, live, "cloudbase")).not.toBeNull();
    // replaced two rotations ago, under the secret before: found by its chain
    expect(await after.rotateSession(app, first.token, 3600, "cloudbase")).toBeNull();
    expect(await after.resolveSession(app, live, "cloudbase")).toBeNull();
  });

  it("mints under the newest secret, so a token minted beside an old secret is caught once it has gone", async () => {
    t = await createTestEngine();
    const app = await t.app();
    const during = await serviceUnder(["secret-b-0123456789abcdef", SECRET_A]);
    const ann = await during.service.create({ app, email: "ann@example.com" });
    const first = await during.service.createSession(app, ann, 3600, "cloudbase");
    const second = await during.service.rotateSession(app, first.token, 3600, "cloudbase");

    const { service: after } = await serviceUnder(["secret-b-0123456789abcdef"]);
    const third = await after.rotateSession(app, second?.session.token ?? "", 3600, "cloudbase");
    const live = third?.session.token ?? "";
    expect(await after.rotateSession(app, first.token, 3600, "cloudbase")).toBeNull();
    expect(await after.resolveSession(app, live, "cloudbase")).toBeNull();
  });

  it("takes a token minted before the MAC by its hash: the rotation that replaced it ends the session", async () => {
    t = await createTestEngine();
    const app = await t.app();
    const { service: accounts } = await serviceUnder([SECRET_A]);
    const ann = await accounts.create({ app, email: "ann@example.com" });
    const opened = await accounts.createSession(app, ann, 3600, "cloudbase");
    // as builds before the MAC minted it: the chain, a dot, 192 random bits
    const chain = opened.token.slice("rt_".length, "rt_".length + 22);
    const legacy = `rt_${chain}.${"L".repeat(32)}`;
    const session = await t.backend.accounts.findSession(app.id, sha256Hex(opened.token), t.clock.nowMs());
    if (!session) throw new Error("the session is missing");
    await t.backend.accounts.createSession({ ...session, tokenHash: sha256Hex(legacy) });

    const rotated = await accounts.rotateSession(app, legacy, 3600, "cloudbase");
    const live = rotated?.session.token ?? "";
    expect(live.startsWith(`rt_${chain}.`)).toBe(true);
    t.clock.advanceSeconds(31);
    expect(await accounts.rotateSession(app, legacy, 3600, "cloudbase")).toBeNull();
    expect(await accounts.resolveSession(app, live, "cloudbase")).toBeNull();
  });
});

// Regression: a new password a session proves spends no proof (CloudBase's sudo token serves for
// 600 s, as often as it is sent), and each change hashed its password in a line with no cap: one
// account's burst of 120 changes filled the line of hashes, and every login of every account was
// refused as busy for some 20 s, as often as the burst came again.
describe("new passwords a session proves", () => {
  const CHANGE_RULE = "password_changes_account:5/600s";
  const changesOf = async (changes: Promise<unknown>[]) =>
    (await Promise.allSettled(changes)).map((outcome) =>
      outcome.status === "fulfilled" ? "changed" : (outcome.reason as OtpError).code,
    );
  const tally = (seen: string[]) =>
    Object.fromEntries([...new Set(seen)].map((code) => [code, seen.filter((each) => each === code).length]));

  it("hashes at most 5 per account in 10 minutes, counted first, and another's login meanwhile is not busy", async () => {
    t = await createTestEngine();
    const app = await t.app();
    const { accounts } = t.engine;
    const ann = await accounts.create({ app, email: "ann@example.com", password: "ann-old-password" });
    const bob = await accountWithCheapPassword("bob@example.com", "bob-right");

    const burst = Array.from({ length: 60 }, () =>
      accounts.changePasswordBySession(ann, "ann-new-password", { keepSessions: [] }),
    );
    const bobsLogin = accounts.verifyPasswordLogin(app, bob, "bob-right", CLIENT);
    // one was written; four more hashed, and lost to it (the password changed meanwhile); the
    // rest were refused before any hash
    expect(tally(await changesOf(burst))).toEqual({ changed: 1, UNAUTHENTICATED: 4, RATE_LIMITED: 55 });
    await bobsLogin;
    const refused = await otpError(accounts.changePasswordBySession(ann, "another", { keepSessions: [] }));
    expect(refused).toMatchObject({
      code: "RATE_LIMITED",
      details: { rule: CHANGE_RULE, retryAfterSeconds: 600 },
    });
    const changed = (await accounts.findById(app, ann.id)) as Account;
    await accounts.verifyPasswordLogin(app, changed, "ann-new-password", CLIENT);

    // the budget is the account's: another's is whole, and ann's comes back with its window
    await accounts.changePasswordBySession(bob, "bob-new-password", { keepSessions: [] });
    t.clock.advanceSeconds(600);
    await accounts.changePasswordBySession(changed, "ann-newer-password", { keepSessions: [] });
  });

  it("is refused as busy past half the line of hashes, where a login still waits, and gives its place back", async () => {
    t = await createTestEngine();
    const app = await t.app();
    const { accounts } = t.engine;
    let ann = await accounts.create({ app, email: "ann@example.com" });
    const bob = await accountWithCheapPassword("bob@example.com", "bob-right");
    // two slow comparisons (p=4: some 0.2-0.5 s) hold both slots while 16 quick ones wait
    const slow = `scrypt$32768$8$4$${Buffer.alloc(16, 1).toString("base64url")}$${Buffer.alloc(32).toString("base64url")}`;
    const cheap = bob.passwordHash as string;
    const halfFull = [slow, slow, ...Array(16).fill(cheap)].map((stored) => verifyPassword("x", stored));
    const busy = await otpError(accounts.changePasswordBySession(ann, "ann-password", { keepSessions: [] }));
    const bobsLogin = accounts.verifyPasswordLogin(app, bob, "bob-right", CLIENT);
    expect(busy).toMatchObject({
      code: "RATE_LIMITED",
      details: { rule: "password_hashes_busy", retryAfterSeconds: 1 },
    });
    await Promise.all([...halfFull, bobsLogin]);

    // the busy refusal hashed nothing and took no place: five changes still follow
    for (let n = 0; n < 5; n++) {
      ann = await accounts.changePasswordBySession(ann, `ann-password-${n}`, { keepSessions: [] });
    }
    const past = await otpError(accounts.changePasswordBySession(ann, "one too many", { keepSessions: [] }));
    expect(past.details.rule).toBe(CHANGE_RULE);
  });
});
