import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { type CaptchaVerifyStub, startCaptchaVerifyStub } from "../../../test/servers/captcha-verify-stub.js";
import { createTurnstileVerifier, TURNSTILE_VERIFY_URL } from "./turnstile.js";

describe("createTurnstileVerifier", () => {
  let stub: CaptchaVerifyStub;

  beforeEach(async () => {
    stub = await startCaptchaVerifyStub();
  });

  afterEach(async () => {
    await stub.close();
  });

  it("defaults to Cloudflare's siteverify endpoint", () => {
    expect(TURNSTILE_VERIFY_URL).toBe("https://challenges.cloudflare.com/turnstile/v0/siteverify");
  });

  it("passes Cloudflare's success answer", async () => {
    const verifier = createTurnstileVerifier({ secret: "0x4AAA", verifyUrl: stub.url });
    stub.reply({
      json: {
        success: true,
        challenge_ts: "2025-01-01T00:00:00.000Z",
        hostname: "example.com",
        "error-codes": [],
        action: "login",
        cdata: "",
      },
    });
    await expect(verifier.verify("token", "2001:db8::1")).resolves.toEqual({ ok: true });
    expect(stub.requests[0]?.form).toEqual({ secret: "0x4AAA", response: "token", remoteip: "2001:db8::1" });
  });

  it("refuses Cloudflare's failure answer with its error codes", async () => {
    const verifier = createTurnstileVerifier({ secret: "0x4AAA", verifyUrl: stub.url });
    stub.reply({ json: { success: false, "error-codes": ["invalid-input-secret"] } });
    await expect(verifier.verify("token")).resolves.toEqual({
      ok: false,
      reason: "rejected:invalid-input-secret",
    });
  });

  it("refuses a token solved for another action when an action is expected", async () => {
    const verifier = createTurnstileVerifier({
      secret: "s",
      verifyUrl: stub.url,
      expectedAction: "send_code",
    });
    stub.reply(
      { json: { success: true, action: "login" } },
      { json: { success: true, action: "send_code" } },
    );
    await expect(verifier.verify("token")).resolves.toEqual({ ok: false, reason: "action_mismatch" });
    await expect(verifier.verify("token")).resolves.toEqual({ ok: true });
  });
});
