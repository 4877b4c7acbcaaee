/**
 * The contract every third-party captcha adapter (Cloudflare Turnstile, hCaptcha, Google reCAPTCHA)
 * fulfils, so the core can require "a human passed a captcha" without knowing whose.
 */

/**
 * Timeout for one siteverify call, connect to last body byte. This is the one outbound call on the
 * send path (DESIGN.md), so a slow vendor must not hold requests for long; the vendors answer in
 * well under a second, and 5 s leaves room for a bad network day. The call fails closed: an answer
 * we did not get is no proof of a human, so a timeout refuses the request.
 */
export const CAPTCHA_VERIFY_TIMEOUT_MS = 5_000;

/**
 * Longest token sent to a vendor. Real tokens are a few hundred to ~2,000 characters (Turnstile
 * documents 2,048 as its maximum); anything longer is refused without spending a network call.
 */
export const MAX_CAPTCHA_TOKEN_CHARS = 4_096;

/** Which vendor a verifier speaks to. */
export type ExternalCaptchaVerifierId = "turnstile" | "hcaptcha" | "recaptcha";

/**
 * The outcome of one verification. `reason` is for logs and metrics only (stable snake_case words,
 * e.g. `timeout`, `http_status_503`, `rejected:invalid-input-response`, `score_too_low:0.3`); a
 * client must only ever learn that the captcha failed.
 */
export interface ExternalCaptchaResult {
  ok: boolean;
  reason?: string;
}

/** Verifies a token a browser widget produced, against the vendor's siteverify API. */
export interface ExternalCaptchaVerifier {
  readonly id: ExternalCaptchaVerifierId;
  /**
   * Asks the vendor whether `token` is a fresh, valid solve. Never throws and never passes on doubt:
   * an empty or oversized token, a timeout, a network error, a non-2xx status or a malformed answer
   * all resolve to `{ ok: false, reason }`. Vendors make a token single-use, so call it once per token.
   *
   * @param remoteIp the end user's IP, forwarded as `remoteip` (an optional extra signal to the vendor)
   */
  verify(token: string, remoteIp?: string): Promise<ExternalCaptchaResult>;
}

/** Options common to every vendor's factory. */
export interface ExternalCaptchaVerifierOptions {
  /** the server-side secret key the vendor issued for the site key the widget uses */
  secret: string;
  /** the siteverify endpoint; defaults to the vendor's real one (set it for tests or a proxy) */
  verifyUrl?: string;
  /** defaults to {@link CAPTCHA_VERIFY_TIMEOUT_MS} */
  timeoutMs?: number;
  /**
   * The hostnames of the pages the widget may be solved on (the answer's `hostname`); unset, any.
   * Without it, a token solved on any site that uses the same keys (an hCaptcha secret serves a
   * whole account) passes.
   */
  expectedHostnames?: readonly string[];
}
