import type { ExternalCaptchaVerifier, ExternalCaptchaVerifierOptions } from "./external-verifier.js";
import { createSiteverifyVerifier } from "./siteverify-verifier.js";

/** Cloudflare's documented endpoint (https://developers.cloudflare.com/turnstile/get-started/server-side-validation/). */
export const TURNSTILE_VERIFY_URL = "https://challenges.cloudflare.com/turnstile/v0/siteverify";

/** Options of {@link createTurnstileVerifier}. */
export interface TurnstileVerifierOptions extends ExternalCaptchaVerifierOptions {
  /** when set, the widget's `action` must match, so a token solved on another form is refused */
  expectedAction?: string;
}

/**
 * Verifies Cloudflare Turnstile tokens: `success` must be true and, if configured, `action` must
 * match. Fails closed on anything else (see {@link ExternalCaptchaVerifier.verify}).
 */
export function createTurnstileVerifier(options: TurnstileVerifierOptions): ExternalCaptchaVerifier {
  const { expectedAction } = options;
  return createSiteverifyVerifier("turnstile", TURNSTILE_VERIFY_URL, options, (answer) => {
    if (expectedAction !== undefined && answer["action"] !== expectedAction) {
      return { ok: false, reason: "action_mismatch" };
    }
    return { ok: true };
  });
}
