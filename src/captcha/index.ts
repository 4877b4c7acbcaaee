/**
 * Captcha adapters for the composition root: challenge generators the core stores and judges
 * (image text, AJ-Captcha-style slider) and verifiers for third-party widgets.
 */
export { createCaptchaGenerator } from "./captcha-generator.js";
export {
  CAPTCHA_VERIFY_TIMEOUT_MS,
  type ExternalCaptchaResult,
  type ExternalCaptchaVerifier,
  type ExternalCaptchaVerifierId,
  type ExternalCaptchaVerifierOptions,
  MAX_CAPTCHA_TOKEN_CHARS,
} from "./external/external-verifier.js";
export {
  createHcaptchaVerifier,
  HCAPTCHA_VERIFY_URL,
  type HcaptchaVerifierOptions,
} from "./external/hcaptcha.js";
export {
  createRecaptchaVerifier,
  RECAPTCHA_DEFAULT_MIN_SCORE,
  RECAPTCHA_VERIFY_URL,
  type RecaptchaVerifierOptions,
} from "./external/recaptcha.js";
export {
  createTurnstileVerifier,
  TURNSTILE_VERIFY_URL,
  type TurnstileVerifierOptions,
} from "./external/turnstile.js";
export {
  createImageChallenge,
  IMAGE_ANSWER_ALPHABET,
  IMAGE_ANSWER_MAX_LENGTH,
  IMAGE_ANSWER_MIN_LENGTH,
  type ImageChallenge,
  normalizeImageAnswer,
} from "./image/image-challenge.js";
export {
  AJ_CAPTCHA_POINT_Y,
  createSecretKey,
  encryptPoint,
  MAX_POINT_JSON_CHARS,
  parsePointJson,
  SECRET_KEY_LENGTH,
  type SliderPoint,
} from "./slider/aj-captcha-point.js";
export {
  createSliderChallenge,
  SLIDER_MAX_DIMENSION_PX,
  SLIDER_TOLERANCE_PX,
  type SliderChallenge,
  type SliderChallengeOptions,
  sliderAnswerMatches,
} from "./slider/slider-challenge.js";
