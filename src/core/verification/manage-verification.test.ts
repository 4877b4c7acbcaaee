import { afterEach, describe, expect, it } from "vitest";
import { otpError } from "../../../test/fakes/otp-error.js";
import { createTestEngine, type TestEngine } from "../../../test/fakes/test-engine.js";

let t: TestEngine;
afterEach(() => t?.close());

async function sent(): Promise<{ id: string; code: string }> {
  const result = await t.engine.sendCode({
    app: await t.app(),
    channel: "email",
    to: "ann@example.com",
    purpose: "sign_in",
    rule: "any",
  });
  await t.deliverAll();
  return { id: result.record.id, code: t.lastCode("ann@example.com") };
}

async function view(id: string) {
  return t.engine.getVerification(await t.app(), id);
}

describe("getVerification", () => {
  it("shows a pending verification with its attempts and deliveries", async () => {
    t = await createTestEngine();
    const { id } = await sent();
    const seen = await view(id);
    expect(seen).toMatchObject({ status: "pending", attemptsRemaining: 5 });
    expect(seen.record).toMatchObject({ id, channel: "email", to: "ann@example.com", purpose: "sign_in" });
    expect(seen.deliveries).toMatchObject([{ provider: "recording-email", status: "sent" }]);
  });

  it("derives expired and max_attempts_reached from time and attempts", async () => {
    t = await createTestEngine();
    const first = await sent();
    t.clock.advanceSeconds(599);
    expect(await view(first.id)).toMatchObject({ status: "pending" });
    t.clock.advanceSeconds(1);
    expect(await view(first.id)).toMatchObject({ status: "expired" });
    const second = await sent();
    const wrong = second.code === "000000" ? "000001" : "000000";
    for (let i = 0; i < 5; i++) {
      await otpError(t.engine.checkCode({ app: await t.app(), target: { id: second.id }, code: wrong }));
    }
    expect(await view(second.id)).toMatchObject({ status: "max_attempts_reached", attemptsRemaining: 0 });
  });

  it("answers VERIFICATION_NOT_FOUND for an unknown id or another app's", async () => {
    t = await createTestEngine();
    const { id } = await sent();
    expect((await otpError(view("vf_unknown"))).code).toBe("VERIFICATION_NOT_FOUND");
    const other = { ...(await t.app()), id: "other" };
    const error = await otpError(t.engine.getVerification(other, id));
    expect(error.code).toBe("VERIFICATION_NOT_FOUND");
    expect(error.details.field).toBe("id");
  });
});

describe("cancelVerification", () => {
  it("cancels a pending code, which then never approves", async () => {
    t = await createTestEngine();
    const { id, code } = await sent();
    expect((await t.engine.cancelVerification(await t.app(), id)).status).toBe("canceled");
    expect((await view(id)).status).toBe("canceled");
    const error = await otpError(t.engine.checkCode({ app: await t.app(), target: { id }, code }));
    expect(error.code).toBe("CODE_CANCELED");
  });

  it("answers a second cancel with the canceled verification", async () => {
    t = await createTestEngine();
    const { id } = await sent();
    await t.engine.cancelVerification(await t.app(), id);
    expect((await t.engine.cancelVerification(await t.app(), id)).status).toBe("canceled");
  });

  it("refuses to cancel an approved code with CODE_ALREADY_USED", async () => {
    t = await createTestEngine();
    const { id, code } = await sent();
    await t.engine.checkCode({ app: await t.app(), target: { id }, code });
    expect((await otpError(t.engine.cancelVerification(await t.app(), id))).code).toBe("CODE_ALREADY_USED");
    expect((await view(id)).status).toBe("approved");
  });

  it("says why a code that is no longer pending cannot be canceled", async () => {
    t = await createTestEngine();
    const first = await sent();
    t.clock.advanceSeconds(60);
    await sent();
    expect((await otpError(t.engine.cancelVerification(await t.app(), first.id))).code).toBe(
      "CODE_SUPERSEDED",
    );
  });

  // Regression: the store canceled expired and exhausted codes, hiding why they ended. @see issue 2
  it("refuses to cancel an expired code with CODE_EXPIRED and leaves it expired", async () => {
    t = await createTestEngine();
    const { id } = await sent();
    t.clock.advanceSeconds(600);
    expect((await otpError(t.engine.cancelVerification(await t.app(), id))).code).toBe("CODE_EXPIRED");
    expect((await view(id)).status).toBe("expired");
  });

  it("refuses to cancel a code killed by wrong guesses with TOO_MANY_ATTEMPTS", async () => {
    t = await createTestEngine();
    const { id, code } = await sent();
    const wrong = code === "000000" ? "000001" : "000000";
    for (let i = 0; i < 5; i++)
      await otpError(t.engine.checkCode({ app: await t.app(), target: { id }, code: wrong }));
    expect((await otpError(t.engine.cancelVerification(await t.app(), id))).code).toBe("TOO_MANY_ATTEMPTS");
    expect((await view(id)).status).toBe("max_attempts_reached");
  });

  it("answers VERIFICATION_NOT_FOUND for an unknown id", async () => {
    t = await createTestEngine();
    expect((await otpError(t.engine.cancelVerification(await t.app(), "vf_unknown"))).code).toBe(
      "VERIFICATION_NOT_FOUND",
    );
  });
});
