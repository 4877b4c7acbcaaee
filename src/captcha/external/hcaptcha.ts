import type { ExternalCaptchaVerifier, ExternalCaptchaVerifierOptions } from "./external-verifier.js";
import { createSiteverifyVerifier } from "./siteverify-verifier.js";

/** hCaptcha's documented endpoint (https://docs.hcaptcha.com/#verify-the-user-response-server-side). */
export const HCAPTCHA_VERIFY_URL = "https://api.hcaptcha.com/siteverify";

/** Options of {@link createHcaptchaVerifier}. */
export interface HcaptchaVerifierOptions extends ExternalCaptchaVerifierOptions {
  /**
   * The widget's sitekey, sent as `sitekey` so hCaptcha refuses a token solved for another sitekey
   * of the same account (one secret serves them all).
   */
  sitekey?: string;
}

/**
 * Verifies hCaptcha tokens: `success` must be true. Enterprise risk scores are not judged (their
 * scale is inverted and plan-specific); fails closed on anything else (see
 * {@link ExternalCaptchaVerifier.verify}).
 */
export function createHcaptchaVerifier(options: HcaptchaVerifierOptions): ExternalCaptchaVerifier {
  const extraFields: Record<string, string> = options.sitekey ? { sitekey: options.sitekey } : {};
  return createSiteverifyVerifier(
    "hcaptcha",
    HCAPTCHA_VERIFY_URL,
    options,
    () => ({ ok: true }),
    extraFields,
  );
}
