import { randomFillSync, randomInt } from "node:crypto";
import { PNG } from "pngjs";

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
 * Both gaps are filled with one colour, the background's mean times a factor drawn per challenge
 * from this range, rather than with the background they cover darkened. A darkened texture is what
 * the piece carries: matching the piece against the background (pixel for pixel, or by correlation,
 * which ignores any darkening and noise) found the true gap over its decoy in 40 challenges of 40.
 */
const GAP_MIN_DARKEN_FACTOR = 0.35;
const GAP_MAX_DARKEN_FACTOR = 0.6;
/**
 * Every channel of every pixel of the piece and of the gaps moves by its own random amount up to this
 * many levels, so no pixel of one follows from the other's: the piece once carried the background's
 * exact pixels and the gap exactly half of them, and a scan for bg = piece × 0.5 found every gap.
 */
const NOISE_LEVELS = 10;
/** Background colour step (of 256 levels per channel): stepped colours compress far better than smooth ramps. */
const COLOR_STEP_LEVELS = 4;
/** Side of a grain cell, and how many colour steps a cell may shift up or down. */
const GRAIN_CELL_PX = 4;
const GRAIN_LEVELS = 2;
/** Small, nearly opaque dots: sharp edges everywhere, so an edge detector finds more than the gap's outline. */
const CONFETTI_DOTS = 40;

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
}

type Rgb = [number, number, number];

/**
 * Draws a slider challenge from scratch (no network, no bundled photos): a random procedural
 * background (gradient, translucent shapes and stripes, small dots, cell grain), a puzzle piece (square
 * with a knob on top and right and a notch on the left) cut at a CSPRNG-chosen position, the gap
 * shaded in the background and the piece returned as a transparent full-height PNG.
 *
 * A second gap of the same shape, the decoy (AJ-Captcha's "interference"), is drawn at the same
 * height elsewhere. Both gaps are one dark colour with its own noise, so nothing inside either says
 * which one the piece came from: a person (or a script) tells them apart by whether the piece's
 * picture carries on into the background around the gap. The piece has noise of its own, so none of
 * its pixels equals, or is a fixed multiple of, a background pixel. A script that compares the piece's
 * edge with the surroundings of both gaps still finds the answer: the slider slows scripts down, the
 * core's per-client budgets and try limits bound the rest.
 *
 * What decides the answer (positions, the darkening, the noise) comes from `node:crypto`; the
 * background's cosmetic randomness uses `Math.random` because it is per pixel and a CSPRNG call each
 * would blow the budget.
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

  const background = drawBackground(width, height);
  const coverage = pieceCoverage(pieceSize);
  const edge = edgePixels(coverage, pieceSize);
  const darken =
    GAP_MIN_DARKEN_FACTOR + ((GAP_MAX_DARKEN_FACTOR - GAP_MIN_DARKEN_FACTOR) * randomInt(1001)) / 1000;
  const noise = new Uint8Array(pieceSize * pieceSize * 3 * (decoyX === null ? 2 : 3));
  randomFillSync(noise);
  let noiseIndex = 0;
  const nextNoise = (): number => (noise[noiseIndex++]! % (2 * NOISE_LEVELS + 1)) - NOISE_LEVELS;

  // pngjs allocates zeroed pixels: fully transparent wherever the loop below draws nothing. The piece
  // is cut before either gap is shaded, from the background as drawn.
  const piece = new PNG({ width: pieceSize, height });
  const pieceData = piece.data;
  const backgroundData = background.data;
  for (let v = 0; v < pieceSize; v += 1) {
    for (let u = 0; u < pieceSize; u += 1) {
      const local = v * pieceSize + u;
      const cover = coverage[local]!;
      if (cover === 0) continue;
      const source = ((y + v) * width + (x + u)) * 4;
      const target = ((y + v) * pieceSize + u) * 4;
      for (let channel = 0; channel < 3; channel += 1) {
        const original = backgroundData[source + channel]!;
        const drawn = edge[local] === 1 ? mix(original, 255, PIECE_OUTLINE_WHITE) : original;
        pieceData[target + channel] = clampByte(Math.round(drawn + nextNoise()));
      }
      pieceData[target + 3] = Math.round((cover / FULL_COVERAGE) * 255);
    }
  }
  const fill = meanColor(backgroundData).map((channel) => channel * darken);
  const rim = fill.map((channel) => mix(channel, 255, GAP_OUTLINE_WHITE));
  for (const gapX of decoyX === null ? [x] : [x, decoyX]) {
    for (let v = 0; v < pieceSize; v += 1) {
      for (let u = 0; u < pieceSize; u += 1) {
        const local = v * pieceSize + u;
        const cover = coverage[local]!;
        if (cover === 0) continue;
        const index = ((y + v) * width + (gapX + u)) * 4;
        const alpha = cover / FULL_COVERAGE;
        const shade = edge[local] === 1 ? rim : fill;
        for (let channel = 0; channel < 3; channel += 1) {
          const original = backgroundData[index + channel]!;
          // Partial coverage blends the shading in, so the gap's outline is as soft as the piece's.
          backgroundData[index + channel] = clampByte(
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
    backgroundPngBase64: encodePng(background, 2),
    piecePngBase64: encodePng(piece, 6),
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

/** Gradient, translucent circles, bars and stripes, opaque dots, then grain: cheap, and never one colour. */
function drawBackground(width: number, height: number): PNG {
  const png = new PNG({ width, height });
  const data = png.data;
  const hue = Math.random() * 360;
  const from = hslToRgb(hue, 0.55, 0.62);
  const to = hslToRgb((hue + 90 + Math.random() * 180) % 360, 0.55, 0.45);
  const angle = Math.random() * Math.PI * 2;
  const dx = Math.cos(angle);
  const dy = Math.sin(angle);
  const span = Math.abs(dx) * width + Math.abs(dy) * height;
  const offset = Math.min(0, dx * width) + Math.min(0, dy * height);
  for (let py = 0; py < height; py += 1) {
    for (let px = 0; px < width; px += 1) {
      const t = (px * dx + py * dy - offset) / span;
      const index = (py * width + px) * 4;
      data[index] = mix(from[0], to[0], t);
      data[index + 1] = mix(from[1], to[1], t);
      data[index + 2] = mix(from[2], to[2], t);
      data[index + 3] = 255;
    }
  }

  const shapes = 8 + Math.floor(Math.random() * 6);
  for (let shape = 0; shape < shapes; shape += 1) {
    const color = hslToRgb(Math.random() * 360, 0.4 + Math.random() * 0.4, 0.3 + Math.random() * 0.45);
    const opacity = 0.3 + Math.random() * 0.45;
    const kind = Math.random();
    if (kind < 0.5) {
      const radius = height * (0.08 + Math.random() * 0.3);
      fillCircle(data, width, height, Math.random() * width, Math.random() * height, radius, color, opacity);
    } else if (kind < 0.8) {
      const barWidth = width * (0.1 + Math.random() * 0.35);
      const barHeight = height * (0.08 + Math.random() * 0.35);
      fillRect(
        data,
        width,
        height,
        Math.random() * width - barWidth / 2,
        Math.random() * height - barHeight / 2,
        barWidth,
        barHeight,
        color,
        opacity,
      );
    } else {
      fillStripes(data, width, height, color, opacity * 0.6);
    }
  }

  for (let dot = 0; dot < CONFETTI_DOTS; dot += 1) {
    const color = hslToRgb(Math.random() * 360, 0.5, 0.3 + Math.random() * 0.45);
    const radius = 2 + Math.random() * 4;
    fillCircle(data, width, height, Math.random() * width, Math.random() * height, radius, color, 0.8);
  }

  // Grain in small cells plus colour steps: enough texture that neither the background nor the
  // shaded gap is one colour, at a fraction of the PNG size of per-pixel noise (~30 KB, not ~90 KB).
  const cells = Math.ceil(width / GRAIN_CELL_PX);
  const grain = new Int16Array(cells);
  for (let py = 0; py < height; py += 1) {
    if (py % GRAIN_CELL_PX === 0) {
      for (let cell = 0; cell < cells; cell += 1) {
        grain[cell] = (Math.floor(Math.random() * (2 * GRAIN_LEVELS + 1)) - GRAIN_LEVELS) * COLOR_STEP_LEVELS;
      }
    }
    for (let px = 0; px < width; px += 1) {
      const index = (py * width + px) * 4;
      const shift = grain[Math.floor(px / GRAIN_CELL_PX)]!;
      for (let channel = 0; channel < 3; channel += 1) {
        data[index + channel] = clampByte(
          Math.round(data[index + channel]! / COLOR_STEP_LEVELS) * COLOR_STEP_LEVELS + shift,
        );
      }
    }
  }
  return png;
}

function fillCircle(
  data: Buffer,
  width: number,
  height: number,
  centerX: number,
  centerY: number,
  radius: number,
  color: Rgb,
  opacity: number,
): void {
  const radiusSquared = radius * radius;
  const top = Math.max(0, Math.floor(centerY - radius));
  const bottom = Math.min(height - 1, Math.ceil(centerY + radius));
  const left = Math.max(0, Math.floor(centerX - radius));
  const right = Math.min(width - 1, Math.ceil(centerX + radius));
  for (let py = top; py <= bottom; py += 1) {
    for (let px = left; px <= right; px += 1) {
      if ((px - centerX) ** 2 + (py - centerY) ** 2 <= radiusSquared) {
        blendPixel(data, (py * width + px) * 4, color, opacity);
      }
    }
  }
}

function fillRect(
  data: Buffer,
  width: number,
  height: number,
  x: number,
  y: number,
  rectWidth: number,
  rectHeight: number,
  color: Rgb,
  opacity: number,
): void {
  const top = Math.max(0, Math.floor(y));
  const bottom = Math.min(height, Math.ceil(y + rectHeight));
  const left = Math.max(0, Math.floor(x));
  const right = Math.min(width, Math.ceil(x + rectWidth));
  for (let py = top; py < bottom; py += 1) {
    for (let px = left; px < right; px += 1) {
      blendPixel(data, (py * width + px) * 4, color, opacity);
    }
  }
}

/** Diagonal stripes across the whole canvas, so the texture also varies along the slide axis. */
function fillStripes(data: Buffer, width: number, height: number, color: Rgb, opacity: number): void {
  const period = 10 + Math.floor(Math.random() * 20);
  const thickness = Math.max(2, Math.floor(period * (0.2 + Math.random() * 0.3)));
  const slope = Math.random() < 0.5 ? 1 : -1;
  const phase = Math.floor(Math.random() * period);
  for (let py = 0; py < height; py += 1) {
    for (let px = 0; px < width; px += 1) {
      const position = (((px + slope * py + phase) % period) + period) % period;
      if (position < thickness) blendPixel(data, (py * width + px) * 4, color, opacity);
    }
  }
}

function meanColor(data: Buffer): Rgb {
  const sums: Rgb = [0, 0, 0];
  for (let index = 0; index < data.length; index += 4) {
    sums[0] += data[index]!;
    sums[1] += data[index + 1]!;
    sums[2] += data[index + 2]!;
  }
  const pixels = data.length / 4;
  return [sums[0] / pixels, sums[1] / pixels, sums[2] / pixels];
}

function blendPixel(data: Buffer, index: number, color: Rgb, opacity: number): void {
  data[index] = mix(data[index]!, color[0], opacity);
  data[index + 1] = mix(data[index + 1]!, color[1], opacity);
  data[index + 2] = mix(data[index + 2]!, color[2], opacity);
}

function mix(from: number, to: number, amount: number): number {
  return from + (to - from) * amount;
}

function clampByte(value: number): number {
  return Math.max(0, Math.min(255, value));
}

function hslToRgb(hueDegrees: number, saturation: number, lightness: number): Rgb {
  const chroma = (1 - Math.abs(2 * lightness - 1)) * saturation;
  const sector = hueDegrees / 60;
  const second = chroma * (1 - Math.abs((sector % 2) - 1));
  const [r, g, b] =
    sector < 1
      ? [chroma, second, 0]
      : sector < 2
        ? [second, chroma, 0]
        : sector < 3
          ? [0, chroma, second]
          : sector < 4
            ? [0, second, chroma]
            : sector < 5
              ? [second, 0, chroma]
              : [chroma, 0, second];
  const base = lightness - chroma / 2;
  return [Math.round((r + base) * 255), Math.round((g + base) * 255), Math.round((b + base) * 255)];
}

/**
 * Deflate level 6 with the default strategy instead of pngjs's 9 with Z_RLE: RLE finds only runs and
 * leaves textured images about half again as large, and level 9 costs CPU on the request path for a
 * few percent of size.
 */
function encodePng(png: PNG, colorType: 2 | 6): string {
  return PNG.sync.write(png, { colorType, deflateLevel: 6, deflateStrategy: 0 }).toString("base64");
}
