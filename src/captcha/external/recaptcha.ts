import type { ExternalCaptchaVerifier, ExternalCaptchaVerifierOptions } from "./external-verifier.js";
import { createSiteverifyVerifier } from "./siteverify-verifier.js";

/** Google's documented endpoint (https://developers.google.com/recaptcha/docs/verify). */
export const RECAPTCHA_VERIFY_URL = "https://www.google.com/recaptcha/api/siteverify";

/** Google's suggested starting threshold for v3 (0.0 is a bot, 1.0 a human). */
export const RECAPTCHA_DEFAULT_MIN_SCORE = 0.5;

/** Options of {@link createRecaptchaVerifier}. */
export interface RecaptchaVerifierOptions extends ExternalCaptchaVerifierOptions {
  /** v3 only: the lowest `score` accepted; default {@link RECAPTCHA_DEFAULT_MIN_SCORE} */
  minScore?: number;
  /** v3 only: when set, `action` must match, so a token minted for another page is refused */
  expectedAction?: string;
}

/**
 * Verifies Google reCAPTCHA v2 and v3 tokens: `success` must be true; a v3 answer (one carrying a
 * `score`) must also reach `minScore`, and `action` must match `expectedAction` when that is set
 * (v2 answers have no action, so set it only for v3 keys). Fails closed on anything else (see
 * {@link ExternalCaptchaVerifier.verify}).
 *
 * @throws RangeError when `minScore` is outside 0…1 (a configuration mistake).
 */
export function createRecaptchaVerifier(options: RecaptchaVerifierOptions): ExternalCaptchaVerifier {
  const minScore = options.minScore ?? RECAPTCHA_DEFAULT_MIN_SCORE;
  if (!Number.isFinite(minScore) || minScore < 0 || minScore > 1) {
    throw new RangeError(`recaptcha: minScore must be from 0 to 1, got ${minScore}`);
  }
  const { expectedAction } = options;
  return createSiteverifyVerifier("recaptcha", RECAPTCHA_VERIFY_URL, options, (answer) => {
    const score = answer["score"];
    // No score means a v2 key (checkbox/invisible): success alone is its verdict. A score that is
    // present but not a number is a malformed answer, and fails closed like one.
    if (score !== undefined) {
      if (typeof score !== "number" || !Number.isFinite(score)) {
        return { ok: false, reason: "malformed_response" };
      }
      if (score < minScore) {
        return { ok: false, reason: `score_too_low:${score}` };
      }
    }
    if (expectedAction !== undefined && answer["action"] !== expectedAction) {
      return { ok: false, reason: "action_mismatch" };
    }
    return { ok: true };
  });
}
