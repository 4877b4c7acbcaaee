import { randomInt } from "node:crypto";
import { hslToRgb } from "../pixels.js";

/** A picture as GIF stores it: a palette and one palette index per pixel. */
export interface IndexedImage {
  width: number;
  height: number;
  /** Colours as 0xRRGGBB; index 0 is the background. The length is a power of two from 2 to 256, as GIF requires. */
  palette: number[];
  /** One palette index per pixel, row by row from the top left (a plain array: omggif's typings take one). */
  pixels: number[];
}

/** White under a dark ink: every image has these two palette entries and no others. */
const BACKGROUND_COLOR = 0xffffff;
/** The ink's palette index; the background's is 0. */
const INK = 1;

/**
 * Fills are sampled on a 4×4 grid per pixel, and a pixel takes the ink when at least 3 of its 16
 * samples are inside. svg-captcha's font draws each letter as a thin double outline: at the 50% a
 * single centre sample amounts to (or 6 of 16) its thinnest strokes break up into dots.
 */
const SAMPLES_PER_PIXEL_SIDE = 4;
const FILL_MIN_SAMPLES_INSIDE = 3;

/** Noise lines come out 1.5 px wide: SVG's 1 px default, widened because there is no anti-aliasing to soften a hairline. */
const NOISE_STROKE_HALF_WIDTH_PX = 0.75;

/** Curves are cut into straight pieces about this long; shorter pieces buy no visible smoothness at this size. */
const CURVE_PIECE_LENGTH_PX = 2;

/** Each glyph is turned by up to this many degrees either way; within ±25° letters still read upright (N stays N, Z stays Z). */
export const GLYPH_MAX_ROTATION_DEGREES = 25;

/**
 * Each glyph's width and height are scaled by their own factor from this range. svg-captcha draws
 * every copy of a character at one size (it moves points by at most 0.1 px), which is what lets one
 * template per character and angle read it.
 */
const GLYPH_MIN_SCALE = 0.85;
export const GLYPH_MAX_SCALE = 1.1;

/**
 * Space between neighbouring glyphs' bounding boxes, from this range. Overlapping glyphs (down to
 * −3 px) read worse to people (18 of 30 at first sight) than to a recognizer trained on images this
 * open-source code draws (81 of 100), so glyphs may touch at most: the captcha is tuned for people,
 * as no built-in one stops a script that trains on it (README).
 */
const GLYPH_MIN_GAP_PX = 0;
const GLYPH_MAX_GAP_PX = 2;

/** How far a glyph's centre may sit above or below the image's middle (less where it would leave the image). */
export const GLYPH_MAX_SHIFT_Y_PX = 5;

/** Glyphs are kept this far inside the image (plus the warp's reach), so no stroke is cut at an edge. */
const GLYPH_EDGE_MARGIN_PX = 1;

/**
 * The warp's ranges: points slide sideways along a sine wave down the image and up or down along one
 * across it. A few pixels over a wave longer than a glyph bends each character differently and moves
 * its parts relative to each other, so no upright picture of it matches.
 */
const WARP_MIN_AMPLITUDE_X_PX = 1.5;
const WARP_MAX_AMPLITUDE_X_PX = 3;
const WARP_MIN_PERIOD_Y_PX = 35;
const WARP_MAX_PERIOD_Y_PX = 70;
const WARP_MIN_AMPLITUDE_Y_PX = 2;
const WARP_MAX_AMPLITUDE_Y_PX = 4;
const WARP_MIN_PERIOD_X_PX = 45;
const WARP_MAX_PERIOD_X_PX = 100;

/**
 * Ink colours: one per image, shared by glyphs and noise lines, so a colour never tells a glyph from
 * a line or one glyph from the next. Dark hues of any kind, readable on white.
 */
const INK_LIGHTNESS = 0.3;
const INK_SATURATION = 0.7;

/** How many coordinate pairs each supported path command takes (all absolute; relative ones are lower-case). */
const POINTS_PER_COMMAND: Readonly<Record<string, number>> = { M: 1, L: 1, Q: 2, C: 3, Z: 0 };

interface Point {
  x: number;
  y: number;
}

interface Bounds {
  left: number;
  right: number;
  top: number;
  bottom: number;
}

/**
 * A straight piece of an outline, as the sample rows it crosses (first to last, inclusive), where it
 * crosses the current one (`x`, moved by `xPerRow` each row), and `winding`: +1 where it runs downwards.
 */
interface Edge {
  firstRow: number;
  lastRow: number;
  x: number;
  xPerRow: number;
  winding: 1 | -1;
}

/** How one glyph is drawn, relative to the plain glyph svg-captcha outlines. */
export interface GlyphPose {
  /** Clockwise degrees (y points down, as in SVG's rotate()), about the centre of the glyph's box. */
  rotationDegrees: number;
  /** Width and height factors, applied before the turn. */
  scaleX: number;
  scaleY: number;
  /** Space between this glyph's box and the one before it; negative overlaps. Unused for the first glyph. */
  gapPx: number;
  /** How far the glyph's centre sits below the image's middle (negative: above). */
  shiftYPx: number;
}

/**
 * A displacement of the whole drawing once laid out: every point (x, y) of an outline or noise curve
 * moves to (x + amplitudeXPx·sin(2π·y/periodYPx + phaseX), y + amplitudeYPx·sin(2π·x/periodXPx + phaseY)).
 * Moving the points (curves are already cut into 2 px pieces) rather than the finished pixels bends
 * strokes smoothly: a pixel warp shifts them in whole-pixel steps, which tear a 1 px stroke into stairs.
 */
export interface SineWarp {
  amplitudeXPx: number;
  periodYPx: number;
  phaseX: number;
  amplitudeYPx: number;
  periodXPx: number;
  phaseY: number;
}

/**
 * Every choice defaults to a fresh draw from `crypto.randomInt`: numbers from a predictable source
 * (such as `Math.random`, whose state can be recovered) could be undone before matching templates.
 * Tests pass fixed ones.
 */
export interface RasterizeOptions {
  /** The pose of the glyph at each place, asked once per glyph from left to right. */
  glyphPose?: (place: number) => GlyphPose;
  /** Where the line of glyphs starts, as a share (0 to 1) of the width the glyphs leave free. */
  lineStartShare?: number;
  /** The drawing's displacement; `null` draws none. */
  warp?: SineWarp | null;
  /** The one colour every glyph and noise line is drawn in, as 0xRRGGBB. */
  inkColor?: number;
}

/**
 * Draws svg-captcha's output into two-colour pixels (no native dependencies), so the captcha leaves
 * the server as a GIF, never as the SVG whose path commands give the answer away. It reads exactly
 * what svg-captcha emits — `<path>` elements in absolute M, L, Q, C and Z commands, filled glyphs
 * with the nonzero rule (SVG's default) and stroked noise curves — and throws on anything else
 * rather than draw a picture that silently lacks part of the challenge.
 *
 * svg-captcha's picture alone is read by template matching: it centres glyph i at a fixed point and
 * colours each glyph (and each line) on its own. So only its outlines are kept: every glyph is scaled
 * and turned by its own pose, the glyphs are set left to right at random gaps (touching or overlapping)
 * and heights from a random start, the whole drawing is warped, and everything is filled in one ink.
 *
 * `width` and `height` are the size svg-captcha was asked for; its viewBox maps one unit to one pixel.
 * @throws Error on an element or path command it does not support.
 */
export function rasterizeSvgCaptcha(
  svg: string,
  width: number,
  height: number,
  options: RasterizeOptions = {},
): IndexedImage {
  const glyphs: Point[][][] = [];
  const lines: Point[][][] = [];
  for (const [, tagName, attributeText = ""] of svg.matchAll(/<(\w+)([^>]*)>/g)) {
    if (tagName === "svg") continue;
    if (tagName !== "path") throw new Error(`unsupported element <${tagName}> in svg-captcha output`);
    const attributes = new Map(
      Array.from(attributeText.matchAll(/([\w-]+)="([^"]*)"/g), ([, name, value]) => [name, value]),
    );
    // SVG defaults: fill black, no stroke; svg-captcha sets fill on glyphs and `fill="none" stroke` on noise.
    const subpaths = flattenPathData(attributes.get("d") ?? "");
    if ((attributes.get("fill") ?? "#000000") !== "none") glyphs.push(subpaths);
    if ((attributes.get("stroke") ?? "none") !== "none") lines.push(subpaths);
  }

  const warp = options.warp === undefined ? randomWarp() : options.warp;
  const reachX = warp === null ? 0 : Math.abs(warp.amplitudeXPx);
  const reachY = warp === null ? 0 : Math.abs(warp.amplitudeYPx);
  const area: Bounds = {
    left: GLYPH_EDGE_MARGIN_PX + reachX,
    right: width - GLYPH_EDGE_MARGIN_PX - reachX,
    top: GLYPH_EDGE_MARGIN_PX + reachY,
    bottom: height - GLYPH_EDGE_MARGIN_PX - reachY,
  };
  const placed = layOutGlyphs(
    glyphs,
    options.glyphPose ?? randomGlyphPose,
    options.lineStartShare ?? randomUnit(),
    area,
    height,
  );

  const pixels = new Array<number>(width * height).fill(0);
  const warped = (subpaths: Point[][]): Point[][] =>
    warp === null ? subpaths : warpSubpaths(subpaths, warp);
  for (const subpaths of placed) fillNonzero(warped(subpaths), pixels, width, height);
  for (const subpaths of lines) {
    for (const points of warped(subpaths)) strokePolyline(points, pixels, width, height);
  }
  return {
    width,
    height,
    palette: [BACKGROUND_COLOR, options.inkColor ?? randomInkColor()],
    pixels,
  };
}

function randomUnit(): number {
  return randomInt(2 ** 30) / 2 ** 30;
}

function randomBetween(min: number, max: number): number {
  return min + (max - min) * randomUnit();
}

function randomGlyphPose(): GlyphPose {
  return {
    rotationDegrees: randomBetween(-GLYPH_MAX_ROTATION_DEGREES, GLYPH_MAX_ROTATION_DEGREES),
    scaleX: randomBetween(GLYPH_MIN_SCALE, GLYPH_MAX_SCALE),
    scaleY: randomBetween(GLYPH_MIN_SCALE, GLYPH_MAX_SCALE),
    gapPx: randomBetween(GLYPH_MIN_GAP_PX, GLYPH_MAX_GAP_PX),
    shiftYPx: randomBetween(-GLYPH_MAX_SHIFT_Y_PX, GLYPH_MAX_SHIFT_Y_PX),
  };
}

function randomWarp(): SineWarp {
  return {
    amplitudeXPx: randomBetween(WARP_MIN_AMPLITUDE_X_PX, WARP_MAX_AMPLITUDE_X_PX),
    periodYPx: randomBetween(WARP_MIN_PERIOD_Y_PX, WARP_MAX_PERIOD_Y_PX),
    phaseX: randomBetween(0, 2 * Math.PI),
    amplitudeYPx: randomBetween(WARP_MIN_AMPLITUDE_Y_PX, WARP_MAX_AMPLITUDE_Y_PX),
    periodXPx: randomBetween(WARP_MIN_PERIOD_X_PX, WARP_MAX_PERIOD_X_PX),
    phaseY: randomBetween(0, 2 * Math.PI),
  };
}

function randomInkColor(): number {
  const [r, g, b] = hslToRgb(randomUnit() * 360, INK_SATURATION, INK_LIGHTNESS);
  return (r << 16) | (g << 8) | b;
}

/**
 * Poses each glyph about the centre of its box, then sets the glyphs left to right in the order
 * svg-captcha placed them (its document order is shuffled among the noise lines), each `gapPx` after
 * the one before, the line starting `lineStartShare` of the way into the free width. Whatever would
 * leave `area` is shrunk to fit: a glyph taller than it, a line wider than it. Flattened points move as
 * the curves would (Bézier curves are affine invariant), into new objects: a subpath's start point is
 * shared with the subpath before.
 */
function layOutGlyphs(
  glyphs: Point[][][],
  glyphPose: (place: number) => GlyphPose,
  lineStartShare: number,
  area: Bounds,
  height: number,
): Point[][][] {
  const sorted = glyphs
    .map((subpaths) => ({ subpaths, bounds: boundsOf(subpaths) }))
    .filter((glyph): glyph is { subpaths: Point[][]; bounds: Bounds } => glyph.bounds !== null)
    .sort((a, b) => a.bounds.left + a.bounds.right - b.bounds.left - b.bounds.right);
  const posed = sorted.map(({ subpaths, bounds }, place) => {
    const pose = glyphPose(place);
    let shape = transformAboutCentre(subpaths, bounds, pose.rotationDegrees, pose.scaleX, pose.scaleY);
    let box = boundsOf(shape)!;
    const tooTall = (box.bottom - box.top) / (area.bottom - area.top);
    if (tooTall > 1) {
      shape = transformAboutCentre(shape, box, 0, 1 / tooTall, 1 / tooTall);
      box = boundsOf(shape)!;
    }
    return { shape, box, pose };
  });

  let lineWidth = 0;
  for (const [place, { box, pose }] of posed.entries()) {
    lineWidth += box.right - box.left + (place === 0 ? 0 : pose.gapPx);
  }
  const fit = Math.min(1, (area.right - area.left) / lineWidth);
  let left = area.left + (area.right - area.left - lineWidth * fit) * lineStartShare;
  return posed.map(({ shape, box, pose }, place) => {
    if (fit < 1) {
      shape = transformAboutCentre(shape, box, 0, fit, fit);
      box = boundsOf(shape)!;
    }
    if (place > 0) left += pose.gapPx * fit;
    const halfHeight = (box.bottom - box.top) / 2;
    const centreY = Math.min(
      area.bottom - halfHeight,
      Math.max(area.top + halfHeight, height / 2 + pose.shiftYPx),
    );
    const shiftX = left - box.left;
    const shiftY = centreY - (box.top + box.bottom) / 2;
    left += box.right - box.left;
    for (const points of shape) {
      for (const point of points) {
        point.x += shiftX;
        point.y += shiftY;
      }
    }
    return shape;
  });
}

/** Scales (first) and turns a glyph about the centre of `bounds`, into new points. */
function transformAboutCentre(
  subpaths: Point[][],
  bounds: Bounds,
  degrees: number,
  scaleX: number,
  scaleY: number,
): Point[][] {
  const centreX = (bounds.left + bounds.right) / 2;
  const centreY = (bounds.top + bounds.bottom) / 2;
  const radians = (degrees * Math.PI) / 180;
  const cos = Math.cos(radians);
  const sin = Math.sin(radians);
  return subpaths.map((points) =>
    points.map(({ x, y }) => {
      const scaledX = (x - centreX) * scaleX;
      const scaledY = (y - centreY) * scaleY;
      return { x: centreX + scaledX * cos - scaledY * sin, y: centreY + scaledX * sin + scaledY * cos };
    }),
  );
}

function boundsOf(subpaths: Point[][]): Bounds | null {
  let left = Number.POSITIVE_INFINITY;
  let right = Number.NEGATIVE_INFINITY;
  let top = Number.POSITIVE_INFINITY;
  let bottom = Number.NEGATIVE_INFINITY;
  for (const points of subpaths) {
    for (const { x, y } of points) {
      left = Math.min(left, x);
      right = Math.max(right, x);
      top = Math.min(top, y);
      bottom = Math.max(bottom, y);
    }
  }
  return left <= right ? { left, right, top, bottom } : null;
}

/**
 * Moves every point by the warp, into new points. Straight pieces longer than a curve's are cut up
 * first (svg-captcha's outlines have some), so they bend like the rest instead of staying straight
 * between their moved ends.
 */
function warpSubpaths(subpaths: Point[][], warp: SineWarp): Point[][] {
  const displace = (x: number, y: number): Point => ({
    x: x + warp.amplitudeXPx * Math.sin((2 * Math.PI * y) / warp.periodYPx + warp.phaseX),
    y: y + warp.amplitudeYPx * Math.sin((2 * Math.PI * x) / warp.periodXPx + warp.phaseY),
  });
  return subpaths.map((points) => {
    const moved: Point[] = [];
    let previous: Point | undefined;
    for (const point of points) {
      if (previous !== undefined) {
        const pieces = Math.ceil(distance(previous, point) / CURVE_PIECE_LENGTH_PX);
        for (let piece = 1; piece < pieces; piece += 1) {
          const t = piece / pieces;
          moved.push(
            displace(previous.x + (point.x - previous.x) * t, previous.y + (point.y - previous.y) * t),
          );
        }
      }
      moved.push(displace(point.x, point.y));
      previous = point;
    }
    return moved;
  });
}

/** Path data as polylines, one per subpath, with every curve cut into straight pieces. */
function flattenPathData(pathData: string): Point[][] {
  const subpaths: Point[][] = [];
  let current: Point[] = [];
  let start: Point = { x: 0, y: 0 };
  const endSubpath = (): void => {
    if (current.length > 1) subpaths.push(current);
  };

  for (const { command, numbers } of parsePathData(pathData)) {
    const pointCount = POINTS_PER_COMMAND[command];
    if (pointCount === undefined) throw new Error(`unsupported path command ${JSON.stringify(command)}`);
    const numberCount = 2 * pointCount;
    if (pointCount === 0 ? numbers.length > 0 : numbers.length === 0 || numbers.length % numberCount !== 0) {
      throw new Error(`path command ${command} has ${numbers.length} numbers`);
    }
    if (command === "Z") {
      current.push(start);
      endSubpath();
      current = [start];
      continue;
    }
    for (let index = 0; index < numbers.length; index += numberCount) {
      const points: Point[] = [];
      for (let pair = index; pair < index + numberCount; pair += 2)
        points.push({ x: numbers[pair]!, y: numbers[pair + 1]! });
      if (command === "M" && index === 0) {
        endSubpath();
        start = points[0]!;
        current = [start];
      } else if (command === "Q" || command === "C") {
        appendCurve(current, [current.at(-1) ?? start, ...points]);
      } else {
        // L, and M's further pairs, which the SVG path grammar reads as linetos.
        current.push(points[0]!);
      }
    }
  }
  endSubpath();
  return subpaths;
}

const DIGIT_0 = 48;
const DIGIT_9 = 57;
const PLUS = 43;
const MINUS = 45;
const DOT = 46;
const COMMA = 44;
/** Space, tab, line feed, carriage return: the separators SVG path data allows besides the comma. */
const WHITESPACE = new Set([32, 9, 10, 13]);

/**
 * Splits path data into commands and their numbers in one pass over the characters. A regex per
 * number plus `Number()` took 180 µs of a render for svg-captcha's ~2,500 coordinates, this about 40.
 * Every character that is not part of a number, a space or a comma starts a command, so anything
 * unexpected (an exponent's `e` included, which svg-captcha never writes) fails as an unsupported command.
 */
function parsePathData(pathData: string): { command: string; numbers: number[] }[] {
  const commands: { command: string; numbers: number[] }[] = [];
  let index = 0;
  while (index < pathData.length) {
    const code = pathData.charCodeAt(index);
    if (!isDigit(code) && code !== PLUS && code !== MINUS && code !== DOT) {
      if (code !== COMMA && !WHITESPACE.has(code)) commands.push({ command: pathData[index]!, numbers: [] });
      index += 1;
      continue;
    }
    const numbers = commands.at(-1)?.numbers;
    if (numbers === undefined) throw new Error("path data starts with a number, not a command");
    const sign = code === MINUS ? -1 : 1;
    if (code === PLUS || code === MINUS) index += 1;
    let value = 0;
    let digitCount = 0;
    for (; isDigit(pathData.charCodeAt(index)); index += 1, digitCount += 1) {
      value = value * 10 + (pathData.charCodeAt(index) - DIGIT_0);
    }
    if (pathData.charCodeAt(index) === DOT) {
      index += 1;
      for (let placeValue = 0.1; isDigit(pathData.charCodeAt(index)); index += 1, digitCount += 1) {
        value += (pathData.charCodeAt(index) - DIGIT_0) * placeValue;
        placeValue /= 10;
      }
    }
    if (digitCount === 0) throw new Error(`malformed number at character ${index} of path data`);
    numbers.push(sign * value);
  }
  return commands;
}

function isDigit(code: number): boolean {
  return code >= DIGIT_0 && code <= DIGIT_9;
}

/** Binomial coefficients, which weigh a quadratic's (degree 2) and a cubic's (3) points in Bernstein form. */
const BINOMIALS_BY_DEGREE: Readonly<Record<number, readonly number[]>> = { 2: [1, 2, 1], 3: [1, 3, 3, 1] };

/**
 * Appends a Bézier curve's points after its start: `hull` is the start, one control point
 * (quadratic) or two (cubic), and the end.
 */
function appendCurve(points: Point[], hull: Point[]): void {
  const degree = hull.length - 1;
  const binomials = BINOMIALS_BY_DEGREE[degree]!;
  let hullLength = 0;
  for (let index = 1; index < hull.length; index += 1) hullLength += distance(hull[index - 1]!, hull[index]!);
  const pieces = Math.min(64, Math.max(1, Math.ceil(hullLength / CURVE_PIECE_LENGTH_PX)));
  for (let piece = 1; piece <= pieces; piece += 1) {
    const t = piece / pieces;
    let x = 0;
    let y = 0;
    for (let index = 0; index <= degree; index += 1) {
      const weight = binomials[index]! * (1 - t) ** (degree - index) * t ** index;
      x += weight * hull[index]!.x;
      y += weight * hull[index]!.y;
    }
    points.push({ x, y });
  }
}

function distance(a: Point, b: Point): number {
  return Math.hypot(b.x - a.x, b.y - a.y);
}

/**
 * Paints the pixels inside the closed subpaths by the nonzero rule. Each sample row keeps the edges
 * it crosses (an active edge list, so a row looks at a handful of edges, not the glyph's hundreds),
 * sorted by where they cross; samples after a crossing that leaves the winding number at zero and
 * before the one that brings it back are inside.
 */
function fillNonzero(subpaths: Point[][], pixels: number[], width: number, height: number): void {
  const samples = SAMPLES_PER_PIXEL_SIDE;
  // Edges by the sample row they start on, so each row picks up its new edges without sorting them all.
  const edgesStartingAt = new Map<number, Edge[]>();
  let firstEdgeRow = Number.POSITIVE_INFINITY;
  let lastEdgeRow = Number.NEGATIVE_INFINITY;
  let leftX = Number.POSITIVE_INFINITY;
  let rightX = Number.NEGATIVE_INFINITY;
  for (const points of subpaths) {
    let previous = points.at(-1);
    for (const point of points) {
      leftX = Math.min(leftX, point.x);
      rightX = Math.max(rightX, point.x);
      if (previous !== undefined) {
        const downwards = previous.y < point.y;
        const top = downwards ? previous : point;
        const bottom = downwards ? point : previous;
        // Sample row r lies at y = (r + 0.5) / samples; an edge covers top.y <= y < bottom.y, half-open
        // so a vertex shared by two edges is crossed once.
        const firstRow = Math.ceil(top.y * samples - 0.5);
        const lastRow = Math.ceil(bottom.y * samples - 0.5) - 1;
        if (firstRow <= lastRow) {
          const xPerY = (bottom.x - top.x) / (bottom.y - top.y);
          const edge: Edge = {
            firstRow,
            lastRow,
            x: top.x + ((firstRow + 0.5) / samples - top.y) * xPerY,
            xPerRow: xPerY / samples,
            winding: downwards ? 1 : -1,
          };
          const startingHere = edgesStartingAt.get(firstRow);
          if (startingHere === undefined) edgesStartingAt.set(firstRow, [edge]);
          else startingHere.push(edge);
          firstEdgeRow = Math.min(firstEdgeRow, firstRow);
          lastEdgeRow = Math.max(lastEdgeRow, lastRow);
        }
      }
      previous = point;
    }
  }
  if (edgesStartingAt.size === 0) return;

  // Whole pixel rows, so each one's samples are complete before it is painted.
  const firstRow = Math.floor(firstEdgeRow / samples) * samples;
  const endRow = Math.min(height * samples, Math.ceil((lastEdgeRow + 1) / samples) * samples);
  const leftPixel = Math.max(0, Math.floor(leftX));
  const rightPixel = Math.min(width - 1, Math.floor(rightX));
  const rowCoverage = new Uint8Array(width);
  const active: Edge[] = [];
  for (let row = firstRow; row < endRow; row += 1) {
    let kept = 0;
    for (const edge of active) if (edge.lastRow >= row) active[kept++] = edge;
    active.length = kept;
    for (const edge of edgesStartingAt.get(row) ?? []) active.push(edge);
    sortByX(active);
    let winding = 0;
    let spanStartX = 0;
    for (const edge of active) {
      if (winding === 0) spanStartX = edge.x;
      winding += edge.winding;
      if (winding === 0) addSpanSamples(rowCoverage, spanStartX, edge.x);
    }
    if ((row + 1) % samples === 0) {
      if (row >= 0) {
        const pixelRowStart = ((row + 1) / samples - 1) * width;
        for (let x = leftPixel; x <= rightPixel; x += 1) {
          if (rowCoverage[x]! >= FILL_MIN_SAMPLES_INSIDE) pixels[pixelRowStart + x] = INK;
        }
      }
      rowCoverage.fill(0, leftPixel, rightPixel + 1);
    }
    for (const edge of active) edge.x += edge.xPerRow;
  }
}

/** Insertion sort: the active edges barely change order from one row to the next. */
function sortByX(edges: Edge[]): void {
  for (let index = 1; index < edges.length; index += 1) {
    const edge = edges[index]!;
    let target = index - 1;
    while (target >= 0 && edges[target]!.x > edge.x) {
      edges[target + 1] = edges[target]!;
      target -= 1;
    }
    edges[target + 1] = edge;
  }
}

/** Adds one to each pixel for every sample column of this row whose centre lies in [startX, endX). */
function addSpanSamples(rowCoverage: Uint8Array, startX: number, endX: number): void {
  const samples = SAMPLES_PER_PIXEL_SIDE;
  const firstColumn = Math.max(0, Math.ceil(startX * samples - 0.5));
  const endColumn = Math.min(rowCoverage.length * samples, Math.ceil(endX * samples - 0.5));
  for (let column = firstColumn; column < endColumn; ) {
    const pixelX = Math.floor(column / samples);
    const count = Math.min(endColumn, (pixelX + 1) * samples) - column;
    rowCoverage[pixelX]! += count;
    column += count;
  }
}

/** Paints every pixel whose centre lies within half the stroke width of the polyline. */
function strokePolyline(points: Point[], pixels: number[], width: number, height: number): void {
  const reach = NOISE_STROKE_HALF_WIDTH_PX;
  for (let index = 1; index < points.length; index += 1) {
    const from = points[index - 1]!;
    const to = points[index]!;
    const dx = to.x - from.x;
    const dy = to.y - from.y;
    const lengthSquared = dx * dx + dy * dy;
    const left = Math.max(0, Math.floor(Math.min(from.x, to.x) - reach));
    const right = Math.min(width - 1, Math.ceil(Math.max(from.x, to.x) + reach));
    const top = Math.max(0, Math.floor(Math.min(from.y, to.y) - reach));
    const bottom = Math.min(height - 1, Math.ceil(Math.max(from.y, to.y) + reach));
    for (let y = top; y <= bottom; y += 1) {
      for (let x = left; x <= right; x += 1) {
        const centreX = x + 0.5 - from.x;
        const centreY = y + 0.5 - from.y;
        const along =
          lengthSquared === 0 ? 0 : Math.min(1, Math.max(0, (centreX * dx + centreY * dy) / lengthSquared));
        const offX = centreX - along * dx;
        const offY = centreY - along * dy;
        if (offX * offX + offY * offY <= reach * reach) pixels[y * width + x] = INK;
      }
    }
  }
}
