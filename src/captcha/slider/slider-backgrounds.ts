import { randomInt } from "node:crypto";
import { hslToRgb, mix, type Rgb } from "../pixels.js";

/** How many pictures a pool keeps per canvas size, each drawn the first time it is picked. */
const DEFAULT_POOL_SIZE = 8;
/**
 * Every this many challenges of a size, the picture picked is drawn afresh first, so drawing (~6 ms)
 * costs ~0.1 ms a challenge. It does not keep a script from learning the pool: a redrawn picture is
 * learned again from its first sighting (see below).
 */
const DEFAULT_REDRAW_EVERY = 64;
/** Pictures are drawn this much larger than the canvas, and each challenge shows a window of one. */
const CROP_SLACK_PX = 32;
/** Each colour channel is scaled by its own factor from this range per challenge. */
const MIN_CHANNEL_GAIN = 0.85;
const MAX_CHANNEL_GAIN = 1.15;
/** The six orders of the red, green and blue channels: one per challenge turns a picture's hues. */
const CHANNEL_ORDERS = [
  [0, 1, 2],
  [0, 2, 1],
  [1, 0, 2],
  [1, 2, 0],
  [2, 0, 1],
  [2, 1, 0],
] as const;

/** Background colour step (of 256 levels per channel): stepped colours compress far better than smooth ramps. */
const COLOR_STEP_LEVELS = 4;
/** Small, nearly opaque dots: sharp edges everywhere, so an edge detector finds more than the gap's outline. */
const CONFETTI_DOTS = 40;

interface Picture {
  width: number;
  height: number;
  /** The mean of each channel over the picture */
  meanColor: Rgb;
  /** RGB, 3 bytes a pixel, row by row (drawn clamped, kept plain: the variants read it faster) */
  pixels: Uint8Array;
}

/** A background for one challenge. */
export interface SliderBackground {
  /** `width`×`height` RGB, 3 bytes a pixel, row by row */
  pixels: Uint8Array;
  /** About the mean of each channel (the whole pool picture's, taken through this variant's colours) */
  meanColor: [number, number, number];
}

/** Backgrounds for slider challenges, drawn into a small pool once and varied per challenge. */
export interface SliderBackgrounds {
  /** A picture no other challenge shares as is. */
  next(width: number, height: number): SliderBackground;
}

export interface SliderBackgroundsOptions {
  poolSize?: number;
  redrawEvery?: number;
}

/**
 * A pool of procedural pictures per canvas size (sizes come from configuration, so pools do not grow
 * with requests). Drawing one costs ~6 ms, half of a challenge's old cost: here each is drawn the
 * first time it is picked and then reused, and every challenge gets its own window of it, flipped
 * or not either way, with its channels reordered and scaled. That keeps one picture from looking
 * like the last, and nothing more: a script that collects a dozen challenges aligns each new one
 * with the pictures it has seen and learns what lies under both gaps, so it tells the real one
 * from the decoy (as it already does by the piece's edges). The built-in slider slows scripts; it
 * is not what stops them (README).
 */
export function createSliderBackgrounds(options: SliderBackgroundsOptions = {}): SliderBackgrounds {
  const poolSize = options.poolSize ?? DEFAULT_POOL_SIZE;
  const redrawEvery = options.redrawEvery ?? DEFAULT_REDRAW_EVERY;
  const pools = new Map<string, { pictures: (Picture | undefined)[]; served: number }>();
  return {
    next(width, height) {
      const key = `${width}x${height}`;
      let pool = pools.get(key);
      if (pool === undefined) {
        pool = { pictures: new Array<Picture | undefined>(poolSize).fill(undefined), served: 0 };
        pools.set(key, pool);
      }
      const slot = randomInt(poolSize);
      pool.served += 1;
      let picture = pool.pictures[slot];
      if (picture === undefined || pool.served % redrawEvery === 0) {
        picture = drawPicture(width + CROP_SLACK_PX, height + CROP_SLACK_PX);
        pool.pictures[slot] = picture;
      }
      return variantOf(picture, width, height);
    },
  };
}

/** A window of the picture, flipped at random either way, its channels reordered and scaled. */
function variantOf(picture: Picture, width: number, height: number): SliderBackground {
  const left = randomInt(picture.width - width + 1);
  const top = randomInt(picture.height - height + 1);
  const flipX = randomInt(2) === 1;
  const flipY = randomInt(2) === 1;
  const order = CHANNEL_ORDERS[randomInt(CHANNEL_ORDERS.length)]!;
  // One table per output channel maps the source channel's level to the scaled one, kept on the
  // colour steps: off them, rows differ by more distinct amounts and the PNG grows by half.
  const levels = new Uint8Array(3 * 256);
  for (let channel = 0; channel < 3; channel += 1) {
    const gain = MIN_CHANNEL_GAIN + ((MAX_CHANNEL_GAIN - MIN_CHANNEL_GAIN) * randomInt(1001)) / 1000;
    for (let level = 0; level < 256; level += 1) {
      levels[channel * 256 + level] = Math.min(
        255,
        Math.round((level * gain) / COLOR_STEP_LEVELS) * COLOR_STEP_LEVELS,
      );
    }
  }
  const [first, second, third] = order;
  const source = picture.pixels;
  const pixels = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y += 1) {
    const sourceRow = (top + (flipY ? height - 1 - y : y)) * picture.width;
    const step = flipX ? -3 : 3;
    let from = (sourceRow + left + (flipX ? width - 1 : 0)) * 3;
    let to = y * width * 3;
    for (let x = 0; x < width; x += 1, from += step, to += 3) {
      pixels[to] = levels[source[from + first]!]!;
      pixels[to + 1] = levels[256 + source[from + second]!]!;
      pixels[to + 2] = levels[512 + source[from + third]!]!;
    }
  }
  const meanColor = order.map(
    (sourceChannel, channel) => levels[channel * 256 + Math.round(picture.meanColor[sourceChannel])]!,
  ) as [number, number, number];
  return { pixels, meanColor };
}

/** Gradient, translucent circles, bars and stripes, then opaque dots, in colour steps: never one colour. */
function drawPicture(width: number, height: number): Picture {
  const data = new Uint8ClampedArray(width * height * 3);
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
      const index = (py * width + px) * 3;
      data[index] = mix(from[0], to[0], t);
      data[index + 1] = mix(from[1], to[1], t);
      data[index + 2] = mix(from[2], to[2], t);
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

  // Colour steps, not grain: grain in 4 px cells gave every row new differences, made the PNG a third
  // larger and deflating it half again as slow, and the gaps no longer need it to hide in.
  for (let index = 0; index < data.length; index += 1) {
    data[index] = Math.round(data[index]! / COLOR_STEP_LEVELS) * COLOR_STEP_LEVELS;
  }
  const meanColor: Rgb = [0, 0, 0];
  for (let index = 0; index < data.length; index += 3) {
    meanColor[0] += data[index]!;
    meanColor[1] += data[index + 1]!;
    meanColor[2] += data[index + 2]!;
  }
  const count = width * height;
  return {
    width,
    height,
    meanColor: [meanColor[0] / count, meanColor[1] / count, meanColor[2] / count],
    pixels: new Uint8Array(data),
  };
}

function fillCircle(
  data: Uint8ClampedArray,
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
        blendPixel(data, (py * width + px) * 3, color, opacity);
      }
    }
  }
}

function fillRect(
  data: Uint8ClampedArray,
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
      blendPixel(data, (py * width + px) * 3, color, opacity);
    }
  }
}

/** Diagonal stripes across the whole canvas, so the texture also varies along the slide axis. */
function fillStripes(
  data: Uint8ClampedArray,
  width: number,
  height: number,
  color: Rgb,
  opacity: number,
): void {
  const period = 10 + Math.floor(Math.random() * 20);
  const thickness = Math.max(2, Math.floor(period * (0.2 + Math.random() * 0.3)));
  const slope = Math.random() < 0.5 ? 1 : -1;
  const phase = Math.floor(Math.random() * period);
  for (let py = 0; py < height; py += 1) {
    for (let px = 0; px < width; px += 1) {
      const position = (((px + slope * py + phase) % period) + period) % period;
      if (position < thickness) blendPixel(data, (py * width + px) * 3, color, opacity);
    }
  }
}

function blendPixel(data: Uint8ClampedArray, index: number, color: Rgb, opacity: number): void {
  data[index] = mix(data[index]!, color[0], opacity);
  data[index + 1] = mix(data[index + 1]!, color[1], opacity);
  data[index + 2] = mix(data[index + 2]!, color[2], opacity);
}
