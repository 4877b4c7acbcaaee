import { afterEach, describe, expect, it } from "vitest";
import { otpError } from "../../../test/fakes/otp-error.js";
import { createTestEngine, SECRET_A, SECRET_B, type TestEngine } from "../../../test/fakes/test-engine.js";
import { timeOrderedKeyBound } from "../ids.js";
import { DEFAULT_POLICY } from "../policy.js";
import type { Purpose } from "../types.js";

let t: TestEngine;
afterEach(() => t?.close());

const ANN = "ann@example.com";

async function sendTo(to = ANN, purpose: Purpose = "sign_in") {
  const result = await t.engine.sendCode({ app: await t.app(), channel: "email", to, purpose, rule: "any" });
  await t.deliverAll();
  return { id: result.record.id, code: t.lastCode(result.record.to) };
}

async function check(id: string, code: string, mode: "consume" | "peek" = "consume") {
  return t.engine.checkCode({ app: await t.app(), target: { id }, code, mode });
}

/** A code of the right shape that is not `code`. */
function wrong(code: string): string {
  return code === "000000" ? "000001" : "000000";
}

describe("checkCode: expiry", () => {
  it("approves a code checked 599 s after it was sent", async () => {
    t = await createTestEngine();
    const { id, code } = await sendTo();
    t.clock.advanceSeconds(599);
    const result = await check(id, code);
    expect(result.record.status).toBe("approved");
    expect(result.token).toMatch(/^vt_/);
    expect(result.tokenExpiresInSeconds).toBe(600);
    // timed by its expiry, so a store purges expired tokens by their key
    const expiresAtMs = t.clock.nowMs() + 600_000;
    expect(result.token?.slice(3, 3 + timeOrderedKeyBound(0).length)).toBe(timeOrderedKeyBound(expiresAtMs));
  });

  it("refuses a code checked 600 s after it was sent with CODE_EXPIRED", async () => {
    t = await createTestEngine();
    const { id, code } = await sendTo();
    t.clock.advanceSeconds(600);
    const error = await otpError(check(id, code));
    expect(error.code).toBe("CODE_EXPIRED");
    const view = await t.engine.getVerification(await t.app(), id);
    expect(view.status).toBe("expired");
  });

  it("honours an app's own validity", async () => {
    t = await createTestEngine({ app: { policy: { ...DEFAULT_POLICY, codeTtlSeconds: 120 } } });
    const { id, code } = await sendTo();
    t.clock.advanceSeconds(120);
    expect((await otpError(check(id, code))).code).toBe("CODE_EXPIRED");
  });
});

describe("checkCode: supersede on resend", () => {
  it("refuses the older code with CODE_SUPERSEDED once a new one was sent, and approves the new one", async () => {
    t = await createTestEngine();
    const first = await sendTo();
    t.clock.advanceSeconds(60);
    const second = await sendTo();
    expect(second.id).not.toBe(first.id);
    expect((await otpError(check(first.id, first.code))).code).toBe("CODE_SUPERSEDED");
    expect((await check(second.id, second.code)).record.status).toBe("approved");
    expect((await t.engine.getVerification(await t.app(), first.id)).status).toBe("superseded");
  });

  it("keeps the first code valid when the resend inside 60 s is refused", async () => {
    t = await createTestEngine();
    const first = await sendTo();
    t.clock.advanceSeconds(59);
    const refused = await otpError(
      t.engine.sendCode({ app: await t.app(), channel: "email", to: ANN, purpose: "sign_in", rule: "any" }),
    );
    expect(refused.code).toBe("RESEND_TOO_SOON");
    expect((await check(first.id, first.code)).record.status).toBe("approved");
  });

  it("does not supersede a code of another purpose for the same recipient", async () => {
    t = await createTestEngine({ app: { policy: { ...DEFAULT_POLICY, perRecipient: [] } } });
    const signIn = await sendTo(ANN, "sign_in");
    const reset = await sendTo(ANN, "reset_password");
    expect((await check(signIn.id, signIn.code)).record.status).toBe("approved");
    expect((await check(reset.id, reset.code)).record.status).toBe("approved");
  });
});

describe("checkCode: the attempt cap", () => {
  it("counts attempts_remaining down 4, 3, 2, 1, 0 over five wrong codes", async () => {
    t = await createTestEngine();
    const { id, code } = await sendTo();
    const remaining: (number | undefined)[] = [];
    for (let i = 0; i < 5; i++) {
      const error = await otpError(check(id, wrong(code)));
      expect(error.code).toBe("CODE_INVALID");
      expect(error.details.field).toBe("code");
      remaining.push(error.details.attemptsRemaining);
    }
    expect(remaining).toEqual([4, 3, 2, 1, 0]);
  });

  it("rejects the sixth check with TOO_MANY_ATTEMPTS even when the code is right", async () => {
    t = await createTestEngine();
    const { id, code } = await sendTo();
    for (let i = 0; i < 5; i++) await otpError(check(id, wrong(code)));
    const error = await otpError(check(id, code));
    expect(error.code).toBe("TOO_MANY_ATTEMPTS");
    expect(error.details.attemptsRemaining).toBe(0);
    const view = await t.engine.getVerification(await t.app(), id);
    expect(view.status).toBe("max_attempts_reached");
    expect(view.attemptsRemaining).toBe(0);
  });

  it("approves the right code on the fifth attempt after four wrong ones", async () => {
    t = await createTestEngine();
    const { id, code } = await sendTo();
    for (let i = 0; i < 4; i++) await otpError(check(id, wrong(code)));
    expect((await check(id, code)).record.status).toBe("approved");
  });

  it("refuses a code of the wrong length or alphabet without spending an attempt", async () => {
    t = await createTestEngine();
    const { id, code } = await sendTo();
    for (const bad of ["12345", "1234567", "12345a", "１２３４５６", " 12345", ""]) {
      const error = await otpError(check(id, bad));
      expect(error.code).toBe("VALIDATION_FAILED");
      expect(error.details.field).toBe("code");
      expect(error.message).toContain("6 digits");
    }
    expect((await t.engine.getVerification(await t.app(), id)).attemptsRemaining).toBe(5);
    expect((await check(id, code)).record.status).toBe("approved");
  });

  it("answers VERIFICATION_NOT_FOUND naming id for an unknown verification", async () => {
    t = await createTestEngine();
    const error = await otpError(check("vf_unknown", "123456"));
    expect(error.code).toBe("VERIFICATION_NOT_FOUND");
    expect(error.details.field).toBe("id");
  });

  it("does not let another app check a code by its id", async () => {
    t = await createTestEngine();
    const { id, code } = await sendTo();
    const other = { ...(await t.app()), id: "other" };
    const error = await otpError(t.engine.checkCode({ app: other, target: { id }, code }));
    expect(error.code).toBe("VERIFICATION_NOT_FOUND");
  });
});

describe("checkCode: single use", () => {
  it("refuses a second check of an approved code with CODE_ALREADY_USED", async () => {
    t = await createTestEngine();
    const { id, code } = await sendTo();
    await check(id, code);
    expect((await otpError(check(id, code))).code).toBe("CODE_ALREADY_USED");
    expect((await t.engine.getVerification(await t.app(), id)).status).toBe("approved");
  });

  it("answers an approval whose SMS bookkeeping after it failed, and the token it minted works", async () => {
    t = await createTestEngine();
    const app = await t.app();
    const to = "+8613800138000";
    const sent = await t.engine.sendCode({ app, channel: "sms", to, purpose: "sign_in", rule: "any" });
    await t.deliverAll();
    // the verified-prefix counter is written after the approval committed
    const { counters } = t.engine.deps;
    const hit = counters.hit.bind(counters);
    counters.hit = async (...args) => {
      if (args[1].startsWith("pump:"))
        throw Object.assign(new Error("disk I/O error"), { code: "SQLITE_IOERR" });
      return hit(...args);
    };
    const approved = await t.engine.checkCode({
      app,
      target: { id: sent.record.id },
      code: t.lastCode(to),
      mode: "consume",
    });
    expect(approved.record.status).toBe("approved");
    expect(await t.engine.redeemToken({ app, token: approved.token as string })).toMatchObject({ to });
  });

  it("approves exactly one of many concurrent checks with the right code", async () => {
    t = await createTestEngine();
    const { id, code } = await sendTo();
    const outcomes = await Promise.allSettled(Array.from({ length: 20 }, () => check(id, code)));
    expect(outcomes.filter((outcome) => outcome.status === "fulfilled")).toHaveLength(1);
  });

  it("refuses a canceled code with CODE_CANCELED", async () => {
    t = await createTestEngine();
    const { id, code } = await sendTo();
    await t.engine.cancelVerification(await t.app(), id);
    expect((await otpError(check(id, code))).code).toBe("CODE_CANCELED");
  });
});

describe("checkCode: peek", () => {
  it("leaves the code pending for the next call, with the attempt of a right peek given back", async () => {
    t = await createTestEngine();
    const { id, code } = await sendTo();
    const peeked = await check(id, code, "peek");
    expect(peeked.token).toBeUndefined();
    expect(peeked.record.status).toBe("pending");
    const view = await t.engine.getVerification(await t.app(), id);
    expect(view.status).toBe("pending");
    expect(view.attemptsRemaining).toBe(5);
    expect((await check(id, code)).token).toMatch(/^vt_/);
  });

  it("never uses up a code with right peeks, and still kills it after 5 wrong checks", async () => {
    t = await createTestEngine();
    const { id, code } = await sendTo();
    // Before, each right peek spent an attempt: 4 wrong + 1 right peek left the code dead.
    for (let i = 0; i < 4; i++) await otpError(check(id, wrong(code), "peek"));
    for (let i = 0; i < 6; i++) await check(id, code, "peek");
    expect((await t.engine.getVerification(await t.app(), id)).attemptsRemaining).toBe(1);
    const fifth = await otpError(check(id, wrong(code), "peek"));
    expect(fifth.details.attemptsRemaining).toBe(0);
    expect((await otpError(check(id, code, "peek"))).code).toBe("TOO_MANY_ATTEMPTS");
    expect((await otpError(check(id, code))).code).toBe("TOO_MANY_ATTEMPTS");
  });

  it("refuses a wrong peek like a wrong check", async () => {
    t = await createTestEngine();
    const { id, code } = await sendTo();
    const error = await otpError(check(id, wrong(code), "peek"));
    expect(error.code).toBe("CODE_INVALID");
    expect(error.details.attemptsRemaining).toBe(4);
  });

  it("refuses sends to a recipient out of failed checks, whose codes could not be checked", async () => {
    t = await createTestEngine({ app: { policy: { ...DEFAULT_POLICY, perRecipient: [] } } });
    const { limit, windowSeconds } = (await t.app()).policy.failedChecksPerRecipient;
    for (let failed = 0; failed < limit; ) {
      const { id, code } = await sendTo();
      for (let j = 0; j < 5 && failed < limit; j++, failed++) await otpError(check(id, wrong(code)));
    }
    const refused = await otpError(sendTo());
    expect(refused.code).toBe("RATE_LIMITED");
    expect(refused.details.rule).toBe(`recipient_failed_checks:${limit}/${windowSeconds}s`);
    expect(refused.details.retryAfterSeconds).toBe(windowSeconds);
    t.clock.advanceSeconds(windowSeconds);
    const { id, code } = await sendTo();
    expect((await check(id, code)).record.status).toBe("approved");
  });

  it("lets sends through once a right peek made while one was sent gave its failure back", async () => {
    t = await createTestEngine({ app: { policy: { ...DEFAULT_POLICY, perRecipient: [] } } });
    const { limit } = (await t.app()).policy.failedChecksPerRecipient;
    for (let failed = 0; failed < limit - 1; ) {
      const { id, code } = await sendTo();
      for (let j = 0; j < 5 && failed < limit - 1; j++, failed++) await otpError(check(id, wrong(code)));
    }
    const { id, code } = await sendTo();
    // The peek counts a failure first and gives it back when the code is right; a send reading
    // the counter in between may be refused, but must not leave later sends refused.
    await Promise.allSettled([check(id, code, "peek"), sendTo(ANN, "sign_up")]);
    t.clock.advanceSeconds(120);
    const next = await sendTo();
    expect((await check(next.id, next.code)).record.status).toBe("approved");
  });

  it("does not charge a right peek to the recipient's failed-checks budget", async () => {
    t = await createTestEngine({ app: { policy: { ...DEFAULT_POLICY, perRecipient: [] } } });
    const budget = (await t.app()).policy.failedChecksPerRecipient.limit;
    // More right peeks than the failure budget allows wrong ones: none of them is a failure.
    for (let i = 0; i < budget / 4 + 1; i++) {
      const { id, code } = await sendTo();
      for (let j = 0; j < 4; j++) await check(id, code, "peek");
    }
    const { id, code } = await sendTo();
    expect((await check(id, code)).record.status).toBe("approved");
  });
});

describe("peekAnyCode", () => {
  const slot = (purpose: Purpose) => ({ channel: "email" as const, to: ANN, purpose });
  const peekAny = async (code: string) =>
    t.engine.peekAnyCode({
      app: await t.app(),
      targets: [slot("bind_contact"), slot("delete_account")],
      code,
    });

  it("charges nothing to the codes passed on the way to the right one", async () => {
    t = await createTestEngine();
    const bind = await sendTo(ANN, "bind_contact");
    t.clock.advanceSeconds(60);
    const del = await sendTo(ANN, "delete_account");
    // Before, each call counted a wrong attempt on the bind code, which died after 5.
    for (let i = 0; i < 6; i++) expect((await peekAny(del.code)).record.id).toBe(del.id);
    for (const { id } of [bind, del]) {
      expect((await t.engine.getVerification(await t.app(), id)).attemptsRemaining).toBe(5);
    }
    expect((await peekAny(bind.code)).record.id).toBe(bind.id);
  });

  it("counts a wrong value against every code it was compared with", async () => {
    t = await createTestEngine();
    const bind = await sendTo(ANN, "bind_contact");
    t.clock.advanceSeconds(60);
    const del = await sendTo(ANN, "delete_account");
    let value = "000000";
    while (value === bind.code || value === del.code) value = String(Number(value) + 1).padStart(6, "0");
    for (let i = 0; i < 5; i++) expect((await otpError(peekAny(value))).code).toBe("CODE_INVALID");
    expect((await otpError(peekAny(del.code))).code).toBe("TOO_MANY_ATTEMPTS");
    expect((await t.engine.getVerification(await t.app(), bind.id)).status).toBe("max_attempts_reached");
  });
});

describe("checkCode: by recipient and purpose", () => {
  it("approves the pending code of (channel, recipient, purpose) given in another spelling", async () => {
    t = await createTestEngine();
    const app = await t.app();
    const sent = await t.engine.sendCode({
      app,
      channel: "sms",
      to: "+86 138 0013 8000",
      purpose: "sign_in",
      rule: "any",
    });
    await t.deliverAll();
    const code = t.lastCode("+8613800138000");
    const result = await t.engine.checkCode({
      app,
      target: { channel: "sms", to: "13800138000", country: "CN", purpose: "sign_in" },
      code,
    });
    expect(result.record.id).toBe(sent.record.id);
  });

  it("never lets a code of one purpose serve another", async () => {
    t = await createTestEngine();
    const app = await t.app();
    const { code } = await sendTo(ANN, "sign_in");
    const error = await otpError(
      t.engine.checkCode({ app, target: { channel: "email", to: ANN, purpose: "sign_up" }, code }),
    );
    expect(error.code).toBe("CODE_INVALID");
    expect(error.details.field).toBe("code");
  });

  it("answers a recipient without a pending code exactly like a wrong code", async () => {
    t = await createTestEngine();
    const app = await t.app();
    const error = await otpError(
      t.engine.checkCode({
        app,
        target: { channel: "email", to: "nobody@example.com", purpose: "sign_in" },
        code: "123456",
        codeField: "verifyCode",
      }),
    );
    expect(error.code).toBe("CODE_INVALID");
    expect(error.details.field).toBe("verifyCode");
  });

  // Regression: a wrong code by recipient said how many attempts were left (4, 3, ...), where no
  // code at all said 0: one free, uncounted check told whether an address had been sent a code.
  it("says nothing of attempts left by recipient, so a wrong code and no code refuse alike", async () => {
    t = await createTestEngine();
    const app = await t.app();
    const { code } = await sendTo(ANN, "sign_up");
    const refusal = async (to: string, mode: "consume" | "peek") => {
      const target = { channel: "email" as const, to, purpose: "sign_up" as const };
      const error = await otpError(t.engine.checkCode({ app, target, code: wrong(code), mode }));
      return { code: error.code, message: error.message, details: error.details };
    };
    const peekAny = async (to: string) => {
      const targets = [{ channel: "email" as const, to, purpose: "sign_up" as const }];
      const error = await otpError(t.engine.peekAnyCode({ app, targets, code: wrong(code) }));
      return { code: error.code, message: error.message, details: error.details };
    };
    const noCode = await refusal("nobody@example.com", "consume");
    expect(noCode).toEqual({ code: "CODE_INVALID", message: expect.any(String), details: { field: "code" } });
    expect(await refusal(ANN, "consume")).toEqual(noCode);
    expect(await refusal(ANN, "peek")).toEqual(noCode);
    expect(await refusal("nobody@example.com", "peek")).toEqual(noCode);
    expect(await peekAny(ANN)).toEqual(noCode);
    expect(await peekAny("nobody@example.com")).toEqual(noCode);
    // By id the caller holds the verification already: its refusals still count down.
    const byId = await sendTo("cat@example.com");
    expect((await otpError(check(byId.id, wrong(byId.code)))).details.attemptsRemaining).toBe(4);
  });

  it("checks the newest code after a resend", async () => {
    t = await createTestEngine();
    const app = await t.app();
    const first = await sendTo();
    t.clock.advanceSeconds(60);
    const second = await sendTo();
    const target = { channel: "email" as const, to: ANN, purpose: "sign_in" as const };
    if (first.code !== second.code) {
      expect((await otpError(t.engine.checkCode({ app, target, code: first.code }))).code).toBe(
        "CODE_INVALID",
      );
    }
    const result = await t.engine.checkCode({ app, target, code: second.code });
    expect(result.record.id).toBe(second.id);
  });

  it("names the recipient field when the recipient is malformed", async () => {
    t = await createTestEngine();
    const error = await otpError(
      t.engine.checkCode({
        app: await t.app(),
        target: { channel: "email", to: "not-an-email", purpose: "sign_in", toField: "account" },
        code: "123456",
      }),
    );
    expect(error.code).toBe("VALIDATION_FAILED");
    expect(error.details.field).toBe("account");
  });
});

describe("checkCode: failed checks per recipient", () => {
  it("refuses even the right code after 20 wrong checks in a day across codes, and resending does not reset it", async () => {
    t = await createTestEngine();
    // A code for another purpose, sent while the recipient still has failed checks to spend.
    const other = await sendTo(ANN, "sign_up");
    t.clock.advanceSeconds(60);
    // Four codes, each killed by five wrong guesses: 20 failures for this recipient today.
    for (let round = 0; round < 4; round++) {
      const { id, code } = await sendTo();
      for (let i = 0; i < 5; i++) expect((await otpError(check(id, wrong(code)))).code).toBe("CODE_INVALID");
      t.clock.advanceSeconds(60);
    }
    const error = await otpError(check(other.id, other.code));
    expect(error.code).toBe("TOO_MANY_ATTEMPTS");
    // The budget's day started at the first failure, 3 × 60 s before the last code was sent.
    expect(error.details.retryAfterSeconds).toBe(86_400 - 4 * 60);
    // The refused check was not counted against the code.
    expect((await t.engine.getVerification(await t.app(), other.id)).attemptsRemaining).toBe(5);
    // Nor does a new code help: once the resend rules allow one, the send is refused until the
    // budget's day ends.
    t.clock.advanceSeconds(600);
    expect((await otpError(sendTo())).code).toBe("RATE_LIMITED");
  });

  it("leaves other recipients unaffected", async () => {
    t = await createTestEngine();
    for (let round = 0; round < 4; round++) {
      const { id, code } = await sendTo();
      for (let i = 0; i < 5; i++) await otpError(check(id, wrong(code)));
      t.clock.advanceSeconds(60);
    }
    const other = await sendTo("bob@example.com");
    expect((await check(other.id, other.code)).record.status).toBe("approved");
  });

  it("allows checks again once the day is over", async () => {
    t = await createTestEngine();
    for (let round = 0; round < 4; round++) {
      const { id, code } = await sendTo();
      for (let i = 0; i < 5; i++) await otpError(check(id, wrong(code)));
      t.clock.advanceSeconds(60);
    }
    t.clock.advanceSeconds(86_400);
    const fresh = await sendTo();
    expect((await check(fresh.id, fresh.code)).record.status).toBe("approved");
  });

  it("does not count a right check as a failure", async () => {
    t = await createTestEngine({ app: { policy: { ...DEFAULT_POLICY, perRecipient: [] } } });
    // 19 failures, then many right checks, then one more failure still fits in the budget of 20.
    for (let round = 0; round < 4; round++) {
      const { id, code } = await sendTo();
      for (let i = 0; i < (round === 3 ? 4 : 5); i++) await otpError(check(id, wrong(code)));
    }
    for (let i = 0; i < 5; i++) {
      const { id, code } = await sendTo();
      await check(id, code);
    }
    const { id, code } = await sendTo();
    expect((await otpError(check(id, wrong(code)))).code).toBe("CODE_INVALID");
    expect((await otpError(check(id, code))).code).toBe("TOO_MANY_ATTEMPTS");
  });
});

describe("checkCode: secret rotation", () => {
  it("verifies a code hashed under the previous secret once the secrets are [new, old]", async () => {
    t = await createTestEngine({ secrets: [SECRET_A] });
    const { id, code } = await sendTo();
    const rotated = await t.withSecrets([SECRET_B, SECRET_A]);
    const result = await rotated.engine.checkCode({ app: await rotated.app(), target: { id }, code });
    expect(result.record.status).toBe("approved");
  });

  it("refuses that code once the previous secret is dropped", async () => {
    t = await createTestEngine({ secrets: [SECRET_A] });
    const { id, code } = await sendTo();
    const dropped = await t.withSecrets([SECRET_B]);
    const error = await otpError(
      dropped.engine.checkCode({ app: await dropped.app(), target: { id }, code }),
    );
    expect(error.code).toBe("CODE_INVALID");
    // ...and restoring the old secret makes it valid again: nothing else was wrong with it.
    const restored = await t.withSecrets([SECRET_B, SECRET_A]);
    expect(
      (await restored.engine.checkCode({ app: await restored.app(), target: { id }, code })).record.status,
    ).toBe("approved");
  });

  it("hashes new codes under the newest secret", async () => {
    t = await createTestEngine({ secrets: [SECRET_A] });
    const rotated = await t.withSecrets([SECRET_B, SECRET_A]);
    const sent = await rotated.engine.sendCode({
      app: await rotated.app(),
      channel: "email",
      to: ANN,
      purpose: "sign_in",
      rule: "any",
    });
    await rotated.deliverAll();
    const code = rotated.lastCode(ANN);
    const onlyB = await t.withSecrets([SECRET_B]);
    expect(
      (await onlyB.engine.checkCode({ app: await onlyB.app(), target: { id: sent.record.id }, code })).record
        .status,
    ).toBe("approved");
  });

  it("delivers a message queued under the previous secret after a rotation", async () => {
    t = await createTestEngine({ secrets: [SECRET_A] });
    await t.engine.sendCode({
      app: await t.app(),
      channel: "email",
      to: ANN,
      purpose: "sign_in",
      rule: "any",
    });
    const rotated = await t.withSecrets([SECRET_B, SECRET_A]);
    await rotated.deliverAll();
    expect(rotated.lastCode(ANN)).toMatch(/^\d{6}$/);
  });
});
