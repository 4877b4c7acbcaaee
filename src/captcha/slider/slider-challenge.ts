import { randomFillSync, randomInt } from "node:crypto";
import { mix } from "../pixels.js";
import { encodePng } from "./encode-png.js";
import { createSliderBackgrounds, type SliderBackgrounds } from "./slider-backgrounds.js";

/**
 * How far (in background pixels) a slider answer may miss the gap and still pass. AJ-Captcha's
 * default `slipOffset` is 5 too, so widgets tuned for it feel the same here.
 */
export const SLIDER_TOLERANCE_PX = 5;

/** Largest background width or height accepted; also the bound on any answered coordinate. */
export const SLIDER_MAX_DIMENSION_PX = 1024;

/** AJ-Captcha's canvas: the widget scales every drag to a 310 px wide background. */
const DEFAULT_WIDTH_PX = 310;
const DEFAULT_HEIGHT_PX = 155;
const DEFAULT_PIECE_SIZE_PX = 47;
const MIN_PIECE_SIZE_PX = 20;

/** Keeps the knob and its outline off the canvas border so no edge pixel is clipped. */
const EDGE_MARGIN_PX = 2;

/** Sub-pixel samples per axis for the piece's edge coverage (anti-aliased alpha). */
const SAMPLES_PER_AXIS = 2;
const FULL_COVERAGE = SAMPLES_PER_AXIS * SAMPLES_PER_AXIS;

/**
 * Both gaps are filled with one colour, about the background's mean times a factor drawn per challenge
 * from this range, rather than with the background they cover darkened. A darkened texture is what
 * the piece carries: matching the piece against the background (pixel for pixel, or by correlation,
 * which ignores any darkening and noise) found the true gap over its decoy in 40 challenges of 40.
 */
const GAP_MIN_DARKEN_FACTOR = 0.35;
const GAP_MAX_DARKEN_FACTOR = 0.6;
/**
 * Every channel of every pixel of the piece and of the gaps moves by its own random amount, up to
 * this many steps of this many levels, so no pixel of one follows from the other's: the piece once
 * carried the background's exact pixels and the gap exactly half of them, and a scan for
 * bg = piece × 0.5 found every gap. Steps as coarse as the background's colours keep the PNG small.
 */
const NOISE_STEPS = 2;
const NOISE_STEP_LEVELS = 4;

/** White blended into edge pixels, on the piece (stronger) and into the gaps' rims. */
const PIECE_OUTLINE_WHITE = 0.65;
const GAP_OUTLINE_WHITE = 0.35;

/**
 * A jigsaw challenge in AJ-Captcha's shape. `x` is the answer (the left edge of the piece's
 * bounding box in the background); `y` is the top of that box, where the piece is drawn inside
 * its full-height image. Only `x` is judged: AJ-Captcha clients always answer `y: 5`.
 */
export interface SliderChallenge {
  x: number;
  y: number;
  /** Left edge of the decoy gap, at the same `y`; null when the canvas has no room for one. Never send it. */
  decoyX: number | null;
  /** PNG (RGB) of `width`×`height`, with the gap shaded at (x, y) */
  backgroundPngBase64: string;
  /**
   * PNG (RGBA) of `pieceSize`×`height`: transparent except the piece, drawn at rows y… — AJ-Captcha's
   * `jigsawImageBase64` convention, so the widget overlays it at the top-left and only slides it.
   */
  piecePngBase64: string;
  width: number;
  height: number;
}

/** Options of {@link createSliderChallenge}; the defaults are AJ-Captcha's 310×155 canvas and 47 px piece. */
export interface SliderChallengeOptions {
  width?: number;
  height?: number;
  pieceSize?: number;
  /** Where backgrounds come from (tests); by default the process's one pool. */
  backgrounds?: SliderBackgrounds;
}

/** The piece's shape for one size: coverage (0…FULL_COVERAGE) and outline (1) per pixel of its box. */
interface PieceShape {
  coverage: Uint8Array;
  edge: Uint8Array;
}

/** The process's pool (as `shapes` below): draws nothing until the first challenge asks. */
const sharedBackgrounds = createSliderBackgrounds();
/** Shapes by piece size (a handful at most: sizes come from configuration). */
const shapes = new Map<number, PieceShape>();

/**
 * Draws a slider challenge (no network, no bundled photos): a procedural background from the pool
 * (see {@link createSliderBackgrounds}), a puzzle piece (square with a knob on top and right and a
 * notch on the left) cut at a CSPRNG-chosen position, the gap shaded in the background and the
 * piece returned as a transparent full-height PNG.
 *
 * A second gap of the same shape, the decoy (AJ-Captcha's "interference"), is drawn at the same
 * height elsewhere. Both gaps are one dark colour with its own noise, so nothing inside either says
 * which one the piece came from: a person (or a script) tells them apart by whether the piece's
 * picture carries on into the background around the gap. The piece has noise of its own, so none of
 * its pixels equals, or is a fixed multiple of, a background pixel. A script that compares the piece's
 * edge with the surroundings of both gaps still finds the answer: the slider slows scripts down, the
 * core's per-client budgets and try limits bound the rest.
 *
 * What decides the answer (positions, the darkening, the noise) comes from `node:crypto`.
 *
 * Costs ~2 ms on the request thread, most of it deflating the background PNG (it was 13-23 ms when
 * every challenge drew its own background and pngjs encoded it at level 6 with adaptive filters);
 * a pool picture's first use adds ~6 ms.
 *
 * @throws RangeError on impossible sizes (a configuration mistake, not a request error).
 */
export function createSliderChallenge(options: SliderChallengeOptions = {}): SliderChallenge {
  const width = options.width ?? DEFAULT_WIDTH_PX;
  const height = options.height ?? DEFAULT_HEIGHT_PX;
  const pieceSize = options.pieceSize ?? DEFAULT_PIECE_SIZE_PX;
  assertSizes(width, height, pieceSize);

  // Never near the left edge, where the piece starts: a tiny drag (or none) must not be an answer.
  const minX = Math.max(pieceSize * 2, Math.floor(width / 4));
  const maxX = width - pieceSize - EDGE_MARGIN_PX;
  const { x, decoyX } = pickGapPositions(minX, maxX, pieceSize);
  const y = randomInt(EDGE_MARGIN_PX, height - pieceSize - EDGE_MARGIN_PX + 1);

  const { pixels: background, meanColor } = (options.backgrounds ?? sharedBackgrounds).next(width, height);
  const { coverage, edge } = pieceShape(pieceSize);
  const darken =
    GAP_MIN_DARKEN_FACTOR + ((GAP_MAX_DARKEN_FACTOR - GAP_MIN_DARKEN_FACTOR) * randomInt(1001)) / 1000;
  const noise = new Uint8Array(pieceSize * pieceSize * 3 * (decoyX === null ? 2 : 3));
  randomFillSync(noise);
  let noiseIndex = 0;
  const nextNoise = (): number =>
    ((noise[noiseIndex++]! % (2 * NOISE_STEPS + 1)) - NOISE_STEPS) * NOISE_STEP_LEVELS;

  // RGBA, zeroed: fully transparent wherever the loop below draws nothing. The piece is cut before
  // either gap is shaded, from the background as drawn.
  const piece = new Uint8Array(pieceSize * height * 4);
  for (let v = 0; v < pieceSize; v += 1) {
    for (let u = 0; u < pieceSize; u += 1) {
      const local = v * pieceSize + u;
      const cover = coverage[local]!;
      if (cover === 0) continue;
      const source = ((y + v) * width + (x + u)) * 3;
      const target = ((y + v) * pieceSize + u) * 4;
      for (let channel = 0; channel < 3; channel += 1) {
        const original = background[source + channel]!;
        const drawn = edge[local] === 1 ? mix(original, 255, PIECE_OUTLINE_WHITE) : original;
        piece[target + channel] = clampByte(Math.round(drawn + nextNoise()));
      }
      piece[target + 3] = Math.round((cover / FULL_COVERAGE) * 255);
    }
  }
  const fill = meanColor.map((channel) => channel * darken);
  const rim = fill.map((channel) => mix(channel, 255, GAP_OUTLINE_WHITE));
  for (const gapX of decoyX === null ? [x] : [x, decoyX]) {
    for (let v = 0; v < pieceSize; v += 1) {
      for (let u = 0; u < pieceSize; u += 1) {
        const local = v * pieceSize + u;
        const cover = coverage[local]!;
        if (cover === 0) continue;
        const index = ((y + v) * width + (gapX + u)) * 3;
        const alpha = cover / FULL_COVERAGE;
        const shade = edge[local] === 1 ? rim : fill;
        for (let channel = 0; channel < 3; channel += 1) {
          const original = background[index + channel]!;
          // Partial coverage blends the shading in, so the gap's outline is as soft as the piece's.
          background[index + channel] = clampByte(
            Math.round(mix(original, shade[channel]! + nextNoise(), alpha)),
          );
        }
      }
    }
  }

  return {
    x,
    y,
    decoyX,
    // RGB without alpha: a quarter smaller, and the background has no transparency to carry.
    backgroundPngBase64: encodePng(width, height, 3, background).toString("base64"),
    piecePngBase64: encodePng(pieceSize, height, 4, piece).toString("base64"),
    width,
    height,
  };
}

/**
 * Whether a slider answer lands on the gap: |answered − expected| ≤ tolerance. Non-finite answers
 * never match (NaN compares false either way, but Infinity − Infinity would too; be explicit).
 */
export function sliderAnswerMatches(
  expectedX: number,
  answeredX: number,
  tolerancePx: number = SLIDER_TOLERANCE_PX,
): boolean {
  if (!Number.isFinite(expectedX) || !Number.isFinite(answeredX) || !Number.isFinite(tolerancePx)) {
    return false;
  }
  return Math.abs(answeredX - expectedX) <= tolerancePx;
}

/**
 * Where the gap and the decoy go: two places drawn alike from minX…maxX that do not overlap, and a
 * coin toss for which is the gap, so neither place tells which one is the answer. Without room for
 * two apart (a canvas barely 4 piece widths wide) there is no decoy.
 */
function pickGapPositions(
  minX: number,
  maxX: number,
  pieceSize: number,
): { x: number; decoyX: number | null } {
  if (maxX - minX < pieceSize) return { x: randomInt(minX, maxX + 1), decoyX: null };
  for (;;) {
    const first = randomInt(minX, maxX + 1);
    const second = randomInt(minX, maxX + 1);
    if (Math.abs(first - second) < pieceSize) continue;
    return randomInt(2) === 0 ? { x: first, decoyX: second } : { x: second, decoyX: first };
  }
}

function assertSizes(width: number, height: number, pieceSize: number): void {
  for (const [name, value] of [
    ["width", width],
    ["height", height],
    ["pieceSize", pieceSize],
  ] as const) {
    if (!Number.isInteger(value) || value <= 0 || value > SLIDER_MAX_DIMENSION_PX) {
      throw new RangeError(
        `slider ${name} must be an integer from 1 to ${SLIDER_MAX_DIMENSION_PX}, got ${value}`,
      );
    }
  }
  if (pieceSize < MIN_PIECE_SIZE_PX) {
    throw new RangeError(`slider pieceSize must be at least ${MIN_PIECE_SIZE_PX}, got ${pieceSize}`);
  }
  if (height < pieceSize + 2 * EDGE_MARGIN_PX) {
    throw new RangeError(`slider height ${height} leaves no room for a ${pieceSize} px piece`);
  }
  // The gap must lie right of the piece's resting place (2 piece widths) with room to vary.
  if (width < pieceSize * 4) {
    throw new RangeError(`slider width ${width} must be at least 4 × pieceSize (${pieceSize * 4})`);
  }
}

/** The piece's shape, worked out once per size: it depends on nothing else. */
function pieceShape(pieceSize: number): PieceShape {
  let shape = shapes.get(pieceSize);
  if (shape === undefined) {
    const coverage = pieceCoverage(pieceSize);
    shape = { coverage, edge: edgePixels(coverage, pieceSize) };
    shapes.set(pieceSize, shape);
  }
  return shape;
}

/**
 * Coverage (0…FULL_COVERAGE) of the piece shape over a pieceSize² box: a square body with round
 * knobs on its top and right and a round notch on its left, so the piece is asymmetric and its
 * outline is not a plain rectangle a bot could match with a box filter.
 */
function pieceCoverage(pieceSize: number): Uint8Array {
  const knobRadius = Math.round(pieceSize * 0.18);
  const bodyLeft = 1;
  const bodyRight = pieceSize - knobRadius - 1;
  const bodyTop = knobRadius + 1;
  const bodyBottom = pieceSize - 1;
  const bodyCenterU = (bodyLeft + bodyRight) / 2;
  const bodyCenterV = (bodyTop + bodyBottom) / 2;
  const knob = (knobRadius - 0.5) ** 2;
  const notch = (knobRadius * 0.7) ** 2;

  const inside = (u: number, v: number): boolean => {
    const inTopKnob = (u - bodyCenterU) ** 2 + (v - bodyTop) ** 2 <= knob;
    const inRightKnob = (u - bodyRight) ** 2 + (v - bodyCenterV) ** 2 <= knob;
    if (inTopKnob || inRightKnob) return true;
    const inBody = u >= bodyLeft && u <= bodyRight && v >= bodyTop && v <= bodyBottom;
    const inNotch = (u - bodyLeft) ** 2 + (v - bodyCenterV) ** 2 <= notch;
    return inBody && !inNotch;
  };

  const coverage = new Uint8Array(pieceSize * pieceSize);
  const step = 1 / SAMPLES_PER_AXIS;
  for (let v = 0; v < pieceSize; v += 1) {
    for (let u = 0; u < pieceSize; u += 1) {
      let count = 0;
      for (let sv = 0; sv < SAMPLES_PER_AXIS; sv += 1) {
        for (let su = 0; su < SAMPLES_PER_AXIS; su += 1) {
          if (inside(u + (su + 0.5) * step, v + (sv + 0.5) * step)) count += 1;
        }
      }
      coverage[v * pieceSize + u] = count;
    }
  }
  return coverage;
}

/** 1 where a covered pixel touches a pixel that is not fully covered: the outline. */
function edgePixels(coverage: Uint8Array, pieceSize: number): Uint8Array {
  const edge = new Uint8Array(pieceSize * pieceSize);
  const full = (u: number, v: number): boolean =>
    u >= 0 && v >= 0 && u < pieceSize && v < pieceSize && coverage[v * pieceSize + u] === FULL_COVERAGE;
  for (let v = 0; v < pieceSize; v += 1) {
    for (let u = 0; u < pieceSize; u += 1) {
      if (coverage[v * pieceSize + u] === 0) continue;
      if (!full(u, v) || !full(u - 1, v) || !full(u + 1, v) || !full(u, v - 1) || !full(u, v + 1)) {
        edge[v * pieceSize + u] = 1;
      }
    }
  }
  return edge;
}

function clampByte(value: number): number {
  return Math.max(0, Math.min(255, value));
}
