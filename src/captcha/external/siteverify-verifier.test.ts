import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { type CaptchaVerifyStub, startCaptchaVerifyStub } from "../../../test/servers/captcha-verify-stub.js";
import type { ExternalCaptchaVerifier, ExternalCaptchaVerifierOptions } from "./external-verifier.js";
import { MAX_CAPTCHA_TOKEN_CHARS } from "./external-verifier.js";
import { createHcaptchaVerifier } from "./hcaptcha.js";
import { createRecaptchaVerifier } from "./recaptcha.js";
import { createTurnstileVerifier } from "./turnstile.js";

// The behaviour every vendor shares (the siteverify protocol and failing closed), run for each.
const vendors: Array<[string, (options: ExternalCaptchaVerifierOptions) => ExternalCaptchaVerifier]> = [
  ["turnstile", createTurnstileVerifier],
  ["hcaptcha", createHcaptchaVerifier],
  ["recaptcha", createRecaptchaVerifier],
];

describe.each(vendors)("%s verifier", (id, create) => {
  let stub: CaptchaVerifyStub;
  let verifier: ExternalCaptchaVerifier;

  beforeEach(async () => {
    stub = await startCaptchaVerifyStub();
    verifier = create({ secret: "s3cret", verifyUrl: stub.url, timeoutMs: 2_000 });
  });

  afterEach(async () => {
    await stub.close();
  });

  it("identifies its vendor", () => {
    expect(verifier.id).toBe(id);
  });

  it("posts secret, response and remoteip form-encoded, and passes on success", async () => {
    stub.reply({ json: { success: true, challenge_ts: "2025-01-01T00:00:00Z", hostname: "example.com" } });
    await expect(verifier.verify("token-abc", "203.0.113.7")).resolves.toEqual({ ok: true });
    expect(stub.requests).toHaveLength(1);
    const [request] = stub.requests;
    expect(request?.method).toBe("POST");
    expect(request?.contentType).toMatch(/^application\/x-www-form-urlencoded/);
    expect(request?.form).toEqual({ secret: "s3cret", response: "token-abc", remoteip: "203.0.113.7" });
  });

  it("leaves remoteip out when no IP is known", async () => {
    await verifier.verify("token-abc");
    expect(stub.requests[0]?.form).toEqual({ secret: "s3cret", response: "token-abc" });
  });

  it("refuses a token the vendor rejects, reporting its error codes", async () => {
    stub.reply({
      json: { success: false, "error-codes": ["invalid-input-response", "timeout-or-duplicate"] },
    });
    await expect(verifier.verify("used-token")).resolves.toEqual({
      ok: false,
      reason: "rejected:invalid-input-response,timeout-or-duplicate",
    });
  });

  it("refuses a rejection without error codes", async () => {
    stub.reply({ json: { success: false } });
    await expect(verifier.verify("token")).resolves.toEqual({ ok: false, reason: "rejected" });
  });

  it("fails closed when the vendor does not answer in time", async () => {
    const quick = create({ secret: "s3cret", verifyUrl: stub.url, timeoutMs: 100 });
    stub.reply({ delayMs: 10_000, json: { success: true } });
    const started = performance.now();
    await expect(quick.verify("token")).resolves.toEqual({ ok: false, reason: "timeout" });
    expect(performance.now() - started).toBeLessThan(2_000);
  });

  it("fails closed on malformed JSON", async () => {
    stub.reply({ rawBody: "{ success: true" });
    await expect(verifier.verify("token")).resolves.toEqual({ ok: false, reason: "malformed_response" });
  });

  it("fails closed on JSON that is not a siteverify answer", async () => {
    stub.reply(
      { json: { success: "true" } },
      { json: [true] },
      { rawBody: "" },
      { rawBody: "<html>ok</html>" },
    );
    for (let run = 0; run < 4; run += 1) {
      await expect(verifier.verify("token")).resolves.toEqual({ ok: false, reason: "malformed_response" });
    }
  });

  it("fails closed on a non-2xx status, even with a success body", async () => {
    stub.reply({ status: 503, json: { success: true } }, { status: 302, json: { success: true } });
    await expect(verifier.verify("token")).resolves.toEqual({ ok: false, reason: "http_status_503" });
    await expect(verifier.verify("token")).resolves.toMatchObject({ ok: false });
  });

  it("fails closed when the vendor cannot be reached", async () => {
    const closed = await startCaptchaVerifyStub();
    await closed.close();
    const unreachable = create({ secret: "s3cret", verifyUrl: closed.url, timeoutMs: 2_000 });
    await expect(unreachable.verify("token")).resolves.toEqual({ ok: false, reason: "network_error" });
  });

  it("refuses empty and oversized tokens without calling the vendor", async () => {
    await expect(verifier.verify("")).resolves.toEqual({ ok: false, reason: "missing_token" });
    await expect(verifier.verify("   ")).resolves.toEqual({ ok: false, reason: "missing_token" });
    await expect(verifier.verify("x".repeat(MAX_CAPTCHA_TOKEN_CHARS + 1))).resolves.toEqual({
      ok: false,
      reason: "token_too_long",
    });
    await expect(verifier.verify(undefined as unknown as string)).resolves.toEqual({
      ok: false,
      reason: "missing_token",
    });
    expect(stub.requests).toHaveLength(0);
  });

  it("accepts a token of exactly the maximum length", async () => {
    await expect(verifier.verify("x".repeat(MAX_CAPTCHA_TOKEN_CHARS))).resolves.toEqual({ ok: true });
  });

  it("refuses bad configuration at construction", () => {
    expect(() => create({ secret: "" })).toThrow(TypeError);
    expect(() => create({ secret: "s", verifyUrl: "ftp://example.com/" })).toThrow(TypeError);
    expect(() => create({ secret: "s", verifyUrl: "not a url" })).toThrow(TypeError);
    expect(() => create({ secret: "s", timeoutMs: 0 })).toThrow(RangeError);
  });
});
