import type { CaptchaGenerator } from "../core/ports.js";
import { createImageChallenge, normalizeImageAnswer } from "./image/image-challenge.js";
import { createSecretKey, parsePointJson } from "./slider/aj-captcha-point.js";
import { createSliderChallenge, SLIDER_TOLERANCE_PX } from "./slider/slider-challenge.js";

/**
 * The built-in challenge renderer: svg-captcha images and jigsaw sliders on procedural backgrounds,
 * drawn into the process's one pool at first use and varied per challenge. It renders on the
 * calling thread; the server renders on a thread of its own (render-thread.ts).
 */
export function createCaptchaGenerator(): CaptchaGenerator {
  return {
    image: async () => createImageChallenge(),
    slider: async () => createSliderChallenge(),
    normalizeImageAnswer,
    parseSliderX(input, clientKey) {
      const trimmed = input.trim();
      // The native API takes the bare offset; IDaaS sends AJ-Captcha point JSON, plain or encrypted.
      // A drag scaled to the background is a float of full precision ("237.28571428571428"); the
      // answer's length is already bounded by the caller.
      if (/^\d{1,4}(\.\d+)?$/.test(trimmed)) return Number(trimmed);
      return parsePointJson(trimmed, clientKey)?.x ?? null;
    },
    clientKey: createSecretKey,
    sliderTolerancePx: SLIDER_TOLERANCE_PX,
  };
}
