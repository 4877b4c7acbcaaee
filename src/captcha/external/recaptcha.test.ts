import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { type CaptchaVerifyStub, startCaptchaVerifyStub } from "../../../test/servers/captcha-verify-stub.js";
import { createRecaptchaVerifier, RECAPTCHA_VERIFY_URL } from "./recaptcha.js";

describe("createRecaptchaVerifier", () => {
  let stub: CaptchaVerifyStub;

  beforeEach(async () => {
    stub = await startCaptchaVerifyStub();
  });

  afterEach(async () => {
    await stub.close();
  });

  it("defaults to Google's siteverify endpoint", () => {
    expect(RECAPTCHA_VERIFY_URL).toBe("https://www.google.com/recaptcha/api/siteverify");
  });

  it("passes a v3 answer whose score reaches the default 0.5", async () => {
    const verifier = createRecaptchaVerifier({ secret: "s", verifyUrl: stub.url });
    stub.reply({ json: { success: true, score: 0.5, action: "send_code" } });
    await expect(verifier.verify("token", "198.51.100.1")).resolves.toEqual({ ok: true });
    expect(stub.requests[0]?.form).toEqual({ secret: "s", response: "token", remoteip: "198.51.100.1" });
  });

  it("refuses a v3 answer whose score is too low, even though success is true", async () => {
    const verifier = createRecaptchaVerifier({ secret: "s", verifyUrl: stub.url });
    stub.reply({ json: { success: true, score: 0.3, action: "send_code" } });
    await expect(verifier.verify("token")).resolves.toEqual({ ok: false, reason: "score_too_low:0.3" });
  });

  it("honours a configured minScore", async () => {
    const verifier = createRecaptchaVerifier({ secret: "s", verifyUrl: stub.url, minScore: 0.8 });
    stub.reply({ json: { success: true, score: 0.7 } }, { json: { success: true, score: 0.9 } });
    await expect(verifier.verify("token")).resolves.toMatchObject({ ok: false });
    await expect(verifier.verify("token")).resolves.toEqual({ ok: true });
  });

  it("refuses a v3 answer for another action when an action is expected", async () => {
    const verifier = createRecaptchaVerifier({
      secret: "s",
      verifyUrl: stub.url,
      expectedAction: "send_code",
    });
    stub.reply(
      { json: { success: true, score: 0.9, action: "login" } },
      { json: { success: true, score: 0.9 } },
    );
    await expect(verifier.verify("token")).resolves.toEqual({ ok: false, reason: "action_mismatch" });
    await expect(verifier.verify("token")).resolves.toEqual({ ok: false, reason: "action_mismatch" });
  });

  it("passes a v2 answer, which has no score", async () => {
    const verifier = createRecaptchaVerifier({ secret: "s", verifyUrl: stub.url });
    stub.reply({ json: { success: true, challenge_ts: "2025-01-01T00:00:00Z", hostname: "example.com" } });
    await expect(verifier.verify("token")).resolves.toEqual({ ok: true });
  });

  it("fails closed on a score that is not a number", async () => {
    const verifier = createRecaptchaVerifier({ secret: "s", verifyUrl: stub.url });
    stub.reply({ json: { success: true, score: "0.9" } });
    await expect(verifier.verify("token")).resolves.toEqual({ ok: false, reason: "malformed_response" });
  });

  it("refuses a minScore outside 0…1", () => {
    expect(() => createRecaptchaVerifier({ secret: "s", minScore: 1.5 })).toThrow(RangeError);
    expect(() => createRecaptchaVerifier({ secret: "s", minScore: -0.1 })).toThrow(RangeError);
  });
});
