import { randomInt } from "node:crypto";
import svgCaptcha from "svg-captcha";
import { encodeGif } from "./encode-gif.js";
import { rasterizeSvgCaptcha } from "./rasterize-svg-captcha.js";

/**
 * Characters an image answer is drawn from: upper-case letters and digits minus the ones people
 * confuse in a distorted font (0/O, 1/I/L, 2/Z, 5/S, 8/B/3, and J, which this font draws like an
 * I). Answers are compared upper-case, so lower-case `l` never appears either.
 */
export const IMAGE_ANSWER_ALPHABET = "ACDEFGHKMNPQRTUVWXY4679";

/** Smallest and largest answer length; 4 is the default (about 18 bits with this 23-character alphabet; the core limits tries). */
export const IMAGE_ANSWER_MIN_LENGTH = 4;
export const IMAGE_ANSWER_MAX_LENGTH = 6;

const IMAGE_WIDTH_PX = 150;
const IMAGE_HEIGHT_PX = 50;
/** Noise curves across the text, in the glyphs' ink: two keep the glyphs readable once they overlap. */
const IMAGE_NOISE_LINES = 2;

/** svg-captcha's default export renders a given text; its bundled typings only declare `create`. */
type RenderSvgCaptcha = (
  text: string,
  options: { width: number; height: number; noise: number; color: boolean },
) => string;

function isRenderer(value: unknown): value is RenderSvgCaptcha {
  return typeof value === "function";
}

/** A freshly drawn image challenge: the core stores `answer` (hashed), the client gets the image. */
export interface ImageChallenge {
  answer: string;
  /** `data:image/gif;base64,...`, ready for an `<img src>` or a native client's image decoder */
  imageDataUri: string;
}

/**
 * Draws a text captcha as a GIF: svg-captcha outlines the glyphs (its public font) and the noise
 * curves, and `rasterizeSvgCaptcha` draws them, never handing out the SVG, whose path commands give
 * the answer away by table look-up. Nor may the pixels be read by matching pictures of the public
 * font against the image, as svg-captcha's own layout allows (each glyph at a fixed centre, in its
 * own colour): the rasterizer scales and turns every glyph on its own, sets them touching or
 * overlapping at random places, draws glyphs and lines in one ink and warps the whole drawing. That
 * stops template matching, not a recognizer trained on such images: this captcha slows scripts down,
 * the core's per-client challenge budgets and try limits bound the rest. The answer is picked with
 * `crypto.randomInt` rather than svg-captcha's own `create`, whose picks use `Math.random` (its state
 * can be recovered from enough outputs).
 *
 * Costs ~1 ms (svg-captcha ~0.15, rasterizing ~0.6, GIF encoding the rest); the core's per-client
 * challenge budgets bound how often an unauthenticated caller can ask for it.
 *
 * @throws RangeError when `length` is not an integer from 4 to 6 (a configuration mistake).
 */
export function createImageChallenge(options: { length?: number } = {}): ImageChallenge {
  const length = options.length ?? IMAGE_ANSWER_MIN_LENGTH;
  if (!Number.isInteger(length) || length < IMAGE_ANSWER_MIN_LENGTH || length > IMAGE_ANSWER_MAX_LENGTH) {
    throw new RangeError(
      `image captcha length must be an integer from ${IMAGE_ANSWER_MIN_LENGTH} to ${IMAGE_ANSWER_MAX_LENGTH}, got ${length}`,
    );
  }
  let answer = "";
  for (let index = 0; index < length; index += 1) {
    answer += IMAGE_ANSWER_ALPHABET[randomInt(IMAGE_ANSWER_ALPHABET.length)];
  }
  const render: unknown = svgCaptcha;
  if (!isRenderer(render)) {
    throw new TypeError("svg-captcha's default export is not a render function");
  }
  // Wider per extra character so 5–6 glyphs are not shrunk to fit.
  const width = IMAGE_WIDTH_PX + (length - IMAGE_ANSWER_MIN_LENGTH) * 30;
  // Colours are the rasterizer's choice (one ink for everything), so svg-captcha's are left grey.
  const svg = render(answer, { width, height: IMAGE_HEIGHT_PX, noise: IMAGE_NOISE_LINES, color: false });
  const gif = encodeGif(rasterizeSvgCaptcha(svg, width, IMAGE_HEIGHT_PX));
  return { answer, imageDataUri: `data:image/gif;base64,${gif.toString("base64")}` };
}

/**
 * Canonical form of a typed image answer (trimmed, upper-case), so `" ab3k "` matches `AB3K`.
 * Apply it both when storing the answer's hash and when checking a guess.
 */
export function normalizeImageAnswer(input: string): string {
  return input.trim().toUpperCase();
}
