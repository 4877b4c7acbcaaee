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

  // Regression: hCaptcha's secret serves every sitekey of an account, so a token solved for any of
  // them passed. @see captcha review 7
  it("posts the configured sitekey, so hCaptcha refuses another sitekey's token", async () => {
    const verifier = createHcaptchaVerifier({ secret: "0x0000", verifyUrl: stub.url, sitekey: "site-1" });
    stub.reply({ json: { success: false, "error-codes": ["sitekey-secret-mismatch"] } });
    await expect(verifier.verify("token")).resolves.toMatchObject({ ok: false });
    expect(stub.requests[0]?.form).toEqual({ sitekey: "site-1", secret: "0x0000", response: "token" });
  });

  // Regression: the answer's hostname was never read: a token solved on any page passed. @see captcha review 7
  it("refuses a token solved on a page whose hostname is not one of the app's", async () => {
    const verifier = createHcaptchaVerifier({
      secret: "0x0000",
      verifyUrl: stub.url,
      expectedHostnames: ["shop.example", "WWW.Shop.example"],
    });
    stub.reply(
      { json: { success: true, hostname: "evil.example" } },
      { json: { success: true } },
      { json: { success: true, hostname: "www.shop.example" } },
    );
    await expect(verifier.verify("token")).resolves.toEqual({ ok: false, reason: "hostname_mismatch" });
    await expect(verifier.verify("token")).resolves.toEqual({ ok: false, reason: "hostname_mismatch" });
    await expect(verifier.verify("token")).resolves.toEqual({ ok: true });
  });
});
