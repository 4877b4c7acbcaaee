import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { type CaptchaVerifyStub, startCaptchaVerifyStub } from "../../../test/servers/captcha-verify-stub.js";
import { createHcaptchaVerifier, HCAPTCHA_VERIFY_URL } from "./hcaptcha.js";

describe("createHcaptchaVerifier", () => {
  let stub: CaptchaVerifyStub;

  beforeEach(async () => {
    stub = await startCaptchaVerifyStub();
  });

  afterEach(async () => {
    await stub.close();
  });

  it("defaults to hCaptcha's siteverify endpoint", () => {
    expect(HCAPTCHA_VERIFY_URL).toBe("https://api.hcaptcha.com/siteverify");
  });

  it("passes hCaptcha's success answer", async () => {
    const verifier = createHcaptchaVerifier({ secret: "0x0000", verifyUrl: stub.url });
    stub.reply({
      json: { success: true, challenge_ts: "2025-01-01T00:00:00Z", hostname: "example.com", credit: false },
    });
    await expect(verifier.verify("token", "192.0.2.5")).resolves.toEqual({ ok: true });
    expect(stub.requests[0]?.form).toEqual({ secret: "0x0000", response: "token", remoteip: "192.0.2.5" });
  });

  it("refuses hCaptcha's failure answer with its error codes", async () => {
    const verifier = createHcaptchaVerifier({ secret: "0x0000", verifyUrl: stub.url });
    stub.reply({
      json: { success: false, "error-codes": ["missing-input-response", "sitekey-secret-mismatch"] },
    });
    await expect(verifier.verify("token")).resolves.toEqual({
      ok: false,
      reason: "rejected:missing-input-response,sitekey-secret-mismatch",
    });
  });
});
