import { afterEach, describe, expect, it } from "vitest";
import { otpError } from "../../../test/fakes/otp-error.js";
import { createTestEngine, type TestEngine } from "../../../test/fakes/test-engine.js";
import { OtpError } from "../errors.js";
import type { Purpose } from "../types.js";
import type { CheckCodeInput } from "../verification/check-code.js";
import {
  type AccountStepDeps,
  type ContactProof,
  type SignUpInput,
  signUp as signUpStep,
} from "./account-steps.js";
import { sessionIdOf } from "./session-id.js";

let t: TestEngine;
afterEach(() => t?.close());

/** Sends a code of `purpose` to `to` and returns the check a caller would make with it. */
async function sentCode(to: string, purpose: Purpose): Promise<CheckCodeInput> {
  const app = await t.app();
  await t.engine.sendCode({ app, channel: "email", to, purpose, rule: "any" });
  await t.deliverAll();
  return {
    app,
    target: { channel: "email", to, purpose, toField: "email" },
    code: t.lastCode(to),
    codeField: "code",
  };
}

async function signUp(proof: ContactProof, fields: Partial<SignUpInput> = {}) {
  return t.engine.signUp({
    app: await t.app(),
    proof,
    password: "secret",
    fields: { contact: "email", username: "user_name" },
    ...fields,
  });
}

describe("signUp", () => {
  it("creates the account of a proven contact and spends the code", async () => {
    t = await createTestEngine();
    const code = await sentCode("ann@example.com", "sign_up");
    const account = await signUp({ code }, { username: "ann", profile: { nickname: "Ann" } });
    expect(account).toMatchObject({
      email: "ann@example.com",
      username: "ann",
      profile: { nickname: "Ann" },
    });
    expect(account.passwordHash).toMatch(/^scrypt\$/);
    // spent: the right code no longer checks
    expect((await otpError(t.engine.checkCode(code))).code).toBe("CODE_INVALID");
  });

  it("refuses a wrong code before telling whether the contact is taken", async () => {
    t = await createTestEngine();
    const app = await t.app();
    await t.engine.accounts.create({ app, email: "ann@example.com" });
    const code = await sentCode("ann@example.com", "sign_up");
    const wrong = code.code === "000000" ? "111111" : "000000";
    expect((await otpError(signUp({ code: { ...code, code: wrong } }))).code).toBe("CODE_INVALID");
  });

  it("names the taken contact or username, and keeps the code for a retry", async () => {
    t = await createTestEngine();
    const app = await t.app();
    await t.engine.accounts.create({ app, email: "bob@example.com", username: "bob" });
    const code = await sentCode("ann@example.com", "sign_up");
    const taken = await otpError(signUp({ code }, { username: "bob" }));
    expect(taken).toMatchObject({ code: "ACCOUNT_EXISTS", message: "This username is taken" });
    expect(taken.details.field).toBe("user_name");
    expect(await signUp({ code }, { username: "ann" })).toMatchObject({ username: "ann" });

    const late = await sentCode("carl@example.com", "sign_up");
    await t.engine.accounts.create({ app, email: "carl@example.com" });
    const registered = await otpError(signUp({ code: late }));
    expect(registered.code).toBe("ACCOUNT_EXISTS");
    expect(registered.details.field).toBe("email");
    // the refusal kept the code: it still checks
    expect((await t.engine.checkCode(late)).token).toBeDefined();
  });

  // Regression: a username was checked only for being free, so IDaaS signed up "alice\u200b" and
  // "\ufeffalice" beside "alice", names with CR LF or a right-to-left override, and names that
  // CloudBase's sign-in reads as a phone number or an email (never able to sign in there).
  // @see .scratch review: IDaaS user_name accepts any text
  it("refuses a username no face could show or sign in by, naming the face's field, and keeps the code", async () => {
    t = await createTestEngine();
    const code = await sentCode("ann@example.com", "sign_up");
    const unusable = [
      "alice\u200b",
      "\ufeffalice",
      "\u202ealice",
      "a\r\nb",
      "a\u0000b",
      "a\u2028b",
      "\ud800alice",
      " alice",
      "alice ",
      "\u3000",
      "",
      "+8613800138000",
      "bob@shop.example",
      // invisible beside a taken name, though no format character (review of 158ecb1)
      "alice\u034f",
      "alice\ufe0f",
      "alice\u3164",
      "alice\u115f",
      "alice\u200d",
      "\u200calice",
      "Jose\u0301",
    ];
    for (const username of unusable) {
      const refused = await otpError(signUp({ code }, { username }));
      expect(refused.code, JSON.stringify(username)).toBe("VALIDATION_FAILED");
      expect(refused.details.field).toBe("user_name");
    }
    expect(await signUp({ code }, { username: "alice" })).toMatchObject({ username: "alice" });
  });

  it("takes the usernames the faces take today: CloudBase's shape, digits, any script, inner spaces", async () => {
    t = await createTestEngine();
    for (const [index, username] of [
      "ann_1-x",
      "10086",
      "Zoë Li",
      "张三",
      "a+b",
      "O'Brien",
      "José",
      // joiners inside words of scripts that need them: Persian, Devanagari, an emoji sequence
      "Mehdi \u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645",
      "\u0915\u094d\u200d\u0937",
      "\u{1f468}\u200d\u{1f469}\u200d\u{1f467}",
    ].entries()) {
      const code = await sentCode(`user${index}@example.com`, "sign_up");
      expect(await signUp({ code }, { username })).toMatchObject({ username });
    }
  });

  it("lets one of two sign-ups racing for a username through, and names the username to the loser", async () => {
    t = await createTestEngine();
    const ann = await sentCode("ann@example.com", "sign_up");
    const bob = await sentCode("bob@example.com", "sign_up");
    const outcomes = await Promise.allSettled([
      signUp({ code: ann }, { username: "same" }),
      signUp({ code: bob }, { username: "same" }),
    ]);
    const refused = outcomes.filter((outcome) => outcome.status === "rejected");
    expect(refused).toHaveLength(1);
    expect((refused[0] as PromiseRejectedResult).reason).toMatchObject({
      code: "ACCOUNT_EXISTS",
      details: { field: "user_name" },
    });
  });

  it("writes no account when the code dies while the sign-up is under way", async () => {
    t = await createTestEngine();
    const app = await t.app();
    for (let round = 0; round < 5; round++) {
      const to = `ann${round}@example.com`;
      const code = await sentCode(to, "sign_up");
      const wrong = code.code === "000000" ? "111111" : "000000";
      // Someone else's five wrong guesses at the same recipient, a few ms into the sign-up: once
      // its code is proven, while it works (a password hash takes ~50 ms).
      const signingUp = signUp({ code });
      await new Promise((resolve) => setTimeout(resolve, 5));
      await Promise.all(
        Array.from({ length: 5 }, () => t.engine.checkCode({ ...code, code: wrong }).catch(() => {})),
      );
      const [outcome] = await Promise.allSettled([signingUp]);
      const stored = await t.engine.accounts.findByContact(app, "email", to);
      expect(stored !== null, `round ${round}: ${outcome.status}`).toBe(outcome.status === "fulfilled");
    }
  });

  // Regression: the account was written (after a 50-100 ms password hash) before the token was
  // spent, so a token redeemed elsewhere meanwhile refused the sign-up but left its account, with
  // the refused request's password. @see .scratch/accounts P2
  it("leaves no account when its token is redeemed elsewhere while the sign-up is under way", async () => {
    t = await createTestEngine();
    const app = await t.app();
    for (let round = 0; round < 5; round++) {
      const to = `ann${round}@example.com`;
      const { token } = await t.engine.checkCode(await sentCode(to, "sign_up"));
      const proof = { token: { app, token: token as string, tokenField: "verification_token" } };
      const signingUp = signUp(proof);
      // A backend redeems the same token a few ms into the sign-up.
      await new Promise((resolve) => setTimeout(resolve, 5));
      const [outcome, redeemed] = await Promise.allSettled([
        signingUp,
        t.engine.redeemToken({ app, token: token as string }),
      ]);
      const stored = await t.engine.accounts.findByContact(app, "email", to);
      expect(stored !== null, `round ${round}: ${outcome.status}`).toBe(outcome.status === "fulfilled");
      // One of the two had the token.
      expect([outcome.status, redeemed.status].sort(), `round ${round}`).toEqual(["fulfilled", "rejected"]);
    }
  });

  it("removes the account of a sign-up whose token was spent between its write and its spend", async () => {
    t = await createTestEngine();
    const app = await t.app();
    const { token } = await t.engine.checkCode(await sentCode("ann@example.com", "sign_up"));
    const { engine } = t;
    // The engine's steps, but a redeem elsewhere wins the token right after the sign-up's own
    // step before the spend (which writes the account).
    const deps: AccountStepDeps = {
      accounts: engine.accounts,
      checkCode: engine.checkCode,
      redeemToken: (input) =>
        engine.redeemToken({
          ...input,
          beforeSpending: async (verified) => {
            await input.beforeSpending?.(verified);
            await engine.redeemToken({ app, token: token as string });
          },
        }),
    };
    const refused = await otpError(
      signUpStep(deps, {
        app,
        proof: { token: { app, token: token as string } },
        username: "ann",
        password: "secret",
        fields: { contact: "email" },
      }),
    );
    expect(refused.code).toBe("TOKEN_INVALID");
    expect(await engine.accounts.findByContact(app, "email", "ann@example.com")).toBeNull();
    expect(await engine.accounts.findByUsername(app, "ann")).toBeNull();
  });

  it("takes the token a sign-up code earned, spends it once, and keeps it on a refusal", async () => {
    t = await createTestEngine();
    const app = await t.app();
    await t.engine.accounts.create({ app, email: "bob@example.com", username: "bob" });
    const { token } = await t.engine.checkCode(await sentCode("ann@example.com", "sign_up"));
    const proof = {
      token: {
        app,
        token: token as string,
        purposes: ["sign_up" as const],
        recipient: { channel: "email" as const, address: "ann@example.com" },
        tokenField: "verification_token",
      },
    };
    expect((await otpError(signUp(proof, { username: "bob" }))).code).toBe("ACCOUNT_EXISTS");
    expect(await signUp(proof, { username: "ann" })).toMatchObject({ email: "ann@example.com" });
    expect((await otpError(signUp(proof, { username: "ann2" }))).code).toBe("TOKEN_INVALID");
  });
});

describe("signInWithCode", () => {
  it("signs in the account the code proves, and refuses an account gone since", async () => {
    t = await createTestEngine();
    const app = await t.app();
    const ann = await t.engine.accounts.create({ app, email: "ann@example.com" });
    expect(await t.engine.signInWithCode(await sentCode("ann@example.com", "sign_in"))).toEqual(ann);
    const nobody = await sentCode("nobody@example.com", "sign_in");
    expect((await otpError(t.engine.signInWithCode(nobody))).code).toBe("ACCOUNT_NOT_FOUND");
  });

  it("checks the code before it tells whether an account exists", async () => {
    t = await createTestEngine();
    const code = await sentCode("nobody@example.com", "sign_in");
    const wrong = code.code === "000000" ? "111111" : "000000";
    expect((await otpError(t.engine.signInWithCode({ ...code, code: wrong }))).code).toBe("CODE_INVALID");
  });

  it("creates the account where the app registers on code login, and signs it in next time", async () => {
    t = await createTestEngine({ app: { loginOrRegister: true } });
    const created = await t.engine.signInWithCode(await sentCode("new@example.com", "sign_in"));
    expect(created).toMatchObject({ email: "new@example.com", profile: {} });
    t.clock.advanceSeconds(61);
    expect(await t.engine.signInWithCode(await sentCode("new@example.com", "sign_in"))).toEqual(created);
  });
});

describe("resetPassword, changeContact, reverify", () => {
  it("resets the password of the account a code proves; no account keeps the code", async () => {
    t = await createTestEngine();
    const app = await t.app();
    const code = await sentCode("ann@example.com", "reset_password");
    expect((await otpError(t.engine.resetPassword({ app, proof: { code }, password: "new" }))).code).toBe(
      "ACCOUNT_NOT_FOUND",
    );
    const ann = await t.engine.accounts.create({ app, email: "ann@example.com", password: "old" });
    await t.engine.resetPassword({ app, proof: { code }, password: "new" });
    const stored = await t.engine.accounts.findById(app, ann.id);
    await t.engine.accounts.verifyPasswordLogin(app, stored!, "new");
    expect((await otpError(t.engine.resetPassword({ app, proof: { code }, password: "again" }))).code).toBe(
      "CODE_INVALID",
    );
  });

  it("lifts a login lockout (the reset proved more than a password) and ends the sessions", async () => {
    t = await createTestEngine();
    const app = await t.app();
    const ann = await t.engine.accounts.create({ app, email: "ann@example.com", password: "old" });
    for (let i = 0; i < 5; i++) await otpError(t.engine.accounts.verifyPasswordLogin(app, ann, "wrong"));
    expect((await otpError(t.engine.accounts.verifyPasswordLogin(app, ann, "old"))).code).toBe(
      "ACCOUNT_LOCKED",
    );
    const code = await sentCode("ann@example.com", "reset_password");
    const thief = await t.engine.accounts.createSession(app, ann, 3600, "fresns");
    const reset = await t.engine.resetPassword({ app, proof: { code }, password: "new" });
    await t.engine.accounts.verifyPasswordLogin(app, reset, "new");
    // and ends every session of the account: a thief's logins end with the password
    expect(await t.engine.accounts.resolveSession(app, thief.token, "fresns")).toBeNull();
  });

  it("moves an account to a proven contact; one another account has is refused and the code kept", async () => {
    t = await createTestEngine();
    const app = await t.app();
    const ann = await t.engine.accounts.create({ app, email: "ann@example.com" });
    const bob = await t.engine.accounts.create({ app, email: "bob@example.com" });
    const code = await sentCode("bob@example.com", "sign_in");
    const change = (account: typeof ann) =>
      t.engine.changeContact({ app, account, proof: { code }, field: "email" });
    const taken = await otpError(change(ann));
    expect(taken).toMatchObject({ code: "ACCOUNT_EXISTS", details: { field: "email" } });
    // kept: the code still serves the account that has the contact (a no-op move)
    expect(await change(bob)).toEqual(bob);
    expect((await t.engine.accounts.findById(app, ann.id))?.email).toBe("ann@example.com");
  });

  it("edits: a taken new contact is told only after its code checks, and then keeps every code", async () => {
    t = await createTestEngine();
    const app = await t.app();
    const ann = await t.engine.accounts.create({ app, email: "ann@example.com" });
    await t.engine.accounts.create({ app, email: "bob@example.com" });
    const own = await sentCode("ann@example.com", "bind_contact");
    const next = await sentCode("bob@example.com", "change_contact");
    const edit = (codes: CheckCodeInput[]) =>
      t.engine.editAccount({
        app,
        account: ann,
        codes: [
          { code: codes[0] as CheckCodeInput },
          { code: codes[1] as CheckCodeInput, newContactField: "newEmail" },
        ],
      });
    // a made-up code for a taken contact is a wrong code, as for a free one
    const madeUp = { ...next, code: next.code === "000000" ? "111111" : "000000" };
    expect((await otpError(edit([own, madeUp]))).code).toBe("CODE_INVALID");
    const free = { ...madeUp, target: { ...madeUp.target, to: "free@example.com" } };
    expect((await otpError(edit([own, free]))).code).toBe("CODE_INVALID");
    expect(await otpError(edit([own, next]))).toMatchObject({
      code: "ACCOUNT_EXISTS",
      details: { field: "newEmail" },
    });
    // kept: both codes still check
    await t.engine.checkCode({ ...own, mode: "peek" });
    await t.engine.checkCode({ ...next, mode: "peek" });
    expect((await t.engine.accounts.findById(app, ann.id))?.email).toBe("ann@example.com");
  });

  it("edits: spends every code and writes the new contact and password in one go", async () => {
    t = await createTestEngine();
    const app = await t.app();
    const ann = await t.engine.accounts.create({ app, email: "ann@example.com", password: "old" });
    const own = await sentCode("ann@example.com", "bind_contact");
    const next = await sentCode("new@example.com", "change_contact");
    const edited = await t.engine.editAccount({
      app,
      account: ann,
      codes: [{ code: own }, { code: next, newContactField: "newEmail" }],
      password: "new-pass",
    });
    expect(edited.email).toBe("new@example.com");
    await t.engine.accounts.verifyPasswordLogin(app, edited, "new-pass");
    for (const code of [own, next])
      expect((await otpError(t.engine.checkCode(code))).code).toBe("CODE_INVALID");
  });

  it("re-verifies by password, or by a token of the account's own contact only", async () => {
    t = await createTestEngine();
    const app = await t.app();
    const ann = await t.engine.accounts.create({ app, email: "ann@example.com", password: "right" });
    await t.engine.reverify({ app, account: ann, proof: { password: "right" } });
    expect(
      (await otpError(t.engine.reverify({ app, account: ann, proof: { password: "wrong" } }))).code,
    ).toBe("PASSWORD_INVALID");
    const tokenOf = async (to: string) =>
      (await t.engine.checkCode(await sentCode(to, "sign_in"))).token as string;
    const foreign = await tokenOf("zed@example.com");
    const refused = await otpError(
      t.engine.reverify({ app, account: ann, proof: { token: { token: foreign } } }),
    );
    expect(refused).toMatchObject({ code: "TOKEN_INVALID", details: { field: "verification_token" } });
    await t.engine.reverify({
      app,
      account: ann,
      proof: { token: { token: await tokenOf("ann@example.com") } },
    });
    // the foreign token was kept for its own contact
    expect((await t.engine.redeemToken({ app, token: foreign })).to).toBe("zed@example.com");
  });
});

describe("the password lockout", () => {
  it("compares no more than 5 guesses sent at once; the 6th and the right password are locked out", async () => {
    t = await createTestEngine();
    const app = await t.app();
    const ann = await t.engine.accounts.create({ app, email: "ann@example.com", password: "right" });
    const outcomes = await Promise.all(
      Array.from({ length: 12 }, () => otpError(t.engine.accounts.verifyPasswordLogin(app, ann, "wrong"))),
    );
    const codes = outcomes.map((error) => error.code);
    expect(codes.filter((code) => code === "PASSWORD_INVALID")).toHaveLength(5);
    expect(codes.filter((code) => code === "ACCOUNT_LOCKED")).toHaveLength(7);
    expect((await otpError(t.engine.accounts.verifyPasswordLogin(app, ann, "right"))).code).toBe(
      "ACCOUNT_LOCKED",
    );
    t.clock.advanceSeconds(3600);
    await t.engine.accounts.verifyPasswordLogin(app, ann, "right");
  });

  it("gives back the place of an attempt that failed other than on its credentials", async () => {
    t = await createTestEngine();
    const app = await t.app();
    const ann = await t.engine.accounts.create({ app, email: "ann@example.com", password: "right" });
    const backendDown = async () => {
      throw new OtpError("STORE_UNAVAILABLE");
    };
    for (let i = 0; i < 6; i++) {
      const error = await otpError(t.engine.accounts.underLoginLockout(app, ann, backendDown));
      expect(error.code).toBe("STORE_UNAVAILABLE");
    }
    const wrongCode = async () => {
      throw new OtpError("CODE_INVALID");
    };
    for (let i = 0; i < 5; i++) await otpError(t.engine.accounts.underLoginLockout(app, ann, wrongCode));
    expect((await otpError(t.engine.accounts.verifyPasswordLogin(app, ann, "right"))).code).toBe(
      "ACCOUNT_LOCKED",
    );
  });

  it("lets a login that passed stand, and a new password, when its failures cannot be cleared", async () => {
    t = await createTestEngine();
    const app = await t.app();
    const ann = await t.engine.accounts.create({ app, email: "ann@example.com", password: "right" });
    for (let i = 0; i < 2; i++) await otpError(t.engine.accounts.verifyPasswordLogin(app, ann, "wrong"));
    // The counter store fails as a backend does, after the password was compared or written.
    const counters = t.engine.deps.counters;
    const reset = counters.reset;
    counters.reset = async () => {
      throw new OtpError("STORE_UNAVAILABLE");
    };
    try {
      await t.engine.accounts.verifyPasswordLogin(app, ann, "right");
      const changed = await t.engine.accounts.update(ann, { password: "newer" });
      expect(changed.credentialVersion).toBe(ann.credentialVersion + 1);
      await t.engine.accounts.resetPassword(changed, "newest");
    } finally {
      counters.reset = reset;
    }
    // What was not cleared (2 wrong, 1 right) still counts: the 6th attempt in the window locks.
    for (let i = 0; i < 3; i++) await otpError(t.engine.accounts.verifyPasswordLogin(app, ann, "wrong"));
    expect((await otpError(t.engine.accounts.verifyPasswordLogin(app, ann, "newest"))).code).toBe(
      "ACCOUNT_LOCKED",
    );
  });

  it("forgets earlier failures once the right password is given", async () => {
    t = await createTestEngine();
    const app = await t.app();
    const ann = await t.engine.accounts.create({ app, email: "ann@example.com", password: "right" });
    for (let i = 0; i < 4; i++) await otpError(t.engine.accounts.verifyPasswordLogin(app, ann, "wrong"));
    await t.engine.accounts.verifyPasswordLogin(app, ann, "right");
    for (let i = 0; i < 4; i++) await otpError(t.engine.accounts.verifyPasswordLogin(app, ann, "wrong"));
    await t.engine.accounts.verifyPasswordLogin(app, ann, "right");
  });
});

describe("sessions and a new password", () => {
  it("lets a refresh stand whose session a new password kept between its rotation and its check", async () => {
    t = await createTestEngine();
    const app = await t.app();
    const ann = await t.engine.accounts.create({ app, email: "ann@example.com", password: "old" });
    const session = await t.engine.accounts.createSession(app, ann, 3600, "cloudbase");
    // The refresh and the caller's own password change arrive at once: the change lands after the
    // refresh rotated the session and before the refresh read the account.
    const [refreshed] = await Promise.all([
      t.engine.accounts.rotateSession(app, session.token, 3600, "cloudbase"),
      t.engine.deps.accounts.update(
        app.id,
        ann.id,
        { passwordHash: "new" },
        { keepSessions: [sessionIdOf(session.token)] },
      ),
    ]);
    expect(refreshed?.account.credentialVersion).toBe(1);
    expect(
      await t.engine.accounts.resolveSession(app, refreshed?.session.token ?? "", "cloudbase"),
    ).toMatchObject({
      id: ann.id,
    });
  });

  it("lets a reset proven by the contact land over a session's change made meanwhile", async () => {
    t = await createTestEngine();
    const app = await t.app();
    const read = await t.engine.accounts.create({ app, email: "ann@example.com", password: "old" });
    // A thief's session changes the password after the owner's reset read the account.
    const thief = await t.engine.accounts.createSession(app, read, 3600, "fresns");
    const thiefs = await t.engine.accounts.update(
      read,
      { password: "thief" },
      { keepSessions: [sessionIdOf(thief.token)] },
    );
    const reset = await t.engine.accounts.resetPassword(read, "owner");
    expect(reset.credentialVersion).toBe(thiefs.credentialVersion + 1);
    await t.engine.accounts.verifyPasswordLogin(app, reset, "owner");
    expect(await t.engine.accounts.resolveSession(app, thief.token, "fresns")).toBeNull();
  });

  it("refuses a change that a session the new password ended allowed, and writes nothing", async () => {
    t = await createTestEngine();
    const app = await t.app();
    // Read by a thief's session just before the owner's reset lands.
    const read = await t.engine.accounts.create({ app, email: "ann@example.com", password: "old" });
    await t.engine.accounts.update(read, { password: "owner" });
    for (const change of [{ password: "thief" }, { email: "thief@evil.example" }]) {
      expect((await otpError(t.engine.accounts.update(read, change))).code).toBe("UNAUTHENTICATED");
    }
    const stored = await t.engine.accounts.findById(app, read.id);
    expect(stored?.email).toBe("ann@example.com");
    await t.engine.accounts.verifyPasswordLogin(app, stored!, "owner");
  });

  it("ends the sessions opened before it, even one a login in flight opens after it", async () => {
    t = await createTestEngine();
    const app = await t.app();
    const read = await t.engine.accounts.create({ app, email: "ann@example.com", password: "old" });
    const before = await t.engine.accounts.createSession(app, read, 3600, "fresns");
    const caller = await t.engine.accounts.createSession(app, read, 3600, "fresns");
    const changed = await t.engine.accounts.update(
      read,
      { password: "new" },
      { keepSessions: [sessionIdOf(caller.token)] },
    );
    expect(changed.credentialVersion).toBe(read.credentialVersion + 1);
    // A login that compared the old password (read before the change) opens its session after it.
    const inFlight = await t.engine.accounts.createSession(app, read, 3600, "fresns");
    expect(await t.engine.accounts.resolveSession(app, before.token, "fresns")).toBeNull();
    expect(await t.engine.accounts.resolveSession(app, inFlight.token, "fresns")).toBeNull();
    expect((await t.engine.accounts.resolveSession(app, caller.token, "fresns"))?.id).toBe(read.id);
    const fresh = await t.engine.accounts.createSession(app, changed, 3600, "fresns");
    expect((await t.engine.accounts.resolveSession(app, fresh.token, "fresns"))?.id).toBe(read.id);
  });
});
