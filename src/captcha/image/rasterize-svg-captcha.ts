import { randomInt } from "node:crypto";

/** A picture as GIF stores it: a palette and one palette index per pixel. */
export interface IndexedImage {
  width: number;
  height: number;
  /** Colours as 0xRRGGBB; index 0 is the background. The length is a power of two from 2 to 256, as GIF requires. */
  palette: number[];
  /** One palette index per pixel, row by row from the top left (a plain array: omggif's typings take one). */
  pixels: number[];
}

/**
 * svg-captcha picks its colours for a white background (its `color(bgColor)` assumes lightness 1
 * when no background is given), so white keeps every glyph and noise line readable.
 */
const BACKGROUND_COLOR = 0xffffff;

/**
 * Fills are sampled on a 4×4 grid per pixel, and a pixel takes a glyph's colour when at least 3 of
 * its 16 samples are inside. svg-captcha's font draws each letter as a thin double outline: at the
 * 50% a single centre sample amounts to (or 6 of 16) its thinnest strokes break up into dots.
 */
const SAMPLES_PER_PIXEL_SIDE = 4;
const FILL_MIN_SAMPLES_INSIDE = 3;

/** Noise lines come out 1.5 px wide: SVG's 1 px default, widened because there is no anti-aliasing to soften a hairline. */
const NOISE_STROKE_HALF_WIDTH_PX = 0.75;

/** Curves are cut into straight pieces about this long; shorter pieces buy no visible smoothness at this size. */
const CURVE_PIECE_LENGTH_PX = 2;

/**
 * Each glyph is turned by up to this many degrees either way. svg-captcha moves a glyph's points by
 * at most 0.1 px, so unturned every copy of a character is nearly the same picture, and one template
 * per character reads the answer; within ±25° letters still read upright (N stays N, Z stays Z).
 */
export const GLYPH_MAX_ROTATION_DEGREES = 25;

/** Angles are drawn in tenths of a degree: 501 of them, too many to keep a template for each. */
const ROTATION_STEPS_PER_DEGREE = 10;

/** Turned glyphs are kept this far inside the image, so no stroke is cut at an edge. */
const GLYPH_EDGE_MARGIN_PX = 1;

/** How many coordinate pairs each supported path command takes (all absolute; relative ones are lower-case). */
const POINTS_PER_COMMAND: Readonly<Record<string, number>> = { M: 1, L: 1, Q: 2, C: 3, Z: 0 };

interface Point {
  x: number;
  y: number;
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

export interface RasterizeOptions {
  /**
   * The angle in degrees (clockwise, as y points down) the next glyph is turned by about the centre
   * of its bounding box, asked once per glyph in document order. Defaults to a uniform draw within
   * ±`GLYPH_MAX_ROTATION_DEGREES` from `crypto.randomInt`: angles from a predictable source (such
   * as `Math.random`, whose state can be recovered) could be undone before matching templates.
   */
  glyphRotationDegrees?: () => number;
}

/**
 * Draws svg-captcha's output into palette-indexed pixels (no native dependencies), so the captcha
 * leaves the server as a GIF, never as the SVG whose path commands give the answer away. It reads
 * exactly what svg-captcha emits — `<path>` elements in absolute M, L, Q, C and Z commands, filled
 * glyphs with the nonzero rule (SVG's default) and stroked noise curves — in document order, and
 * throws on anything else rather than draw a picture that silently lacks part of the challenge. Each
 * glyph (a filled path) is turned by its own angle first; noise lines (stroked, `fill="none"`) are not.
 *
 * `width` and `height` are the size svg-captcha was asked for; its viewBox maps one unit to one pixel.
 * @throws Error on an element, path command or colour it does not support.
 */
export function rasterizeSvgCaptcha(
  svg: string,
  width: number,
  height: number,
  options: RasterizeOptions = {},
): IndexedImage {
  const glyphRotationDegrees = options.glyphRotationDegrees ?? randomGlyphRotationDegrees;
  const palette = [BACKGROUND_COLOR];
  const pixels = new Array<number>(width * height).fill(0);

  const paletteIndexOf = (color: string): number => {
    const rgb = parseColor(color);
    let index = palette.indexOf(rgb);
    if (index === -1) {
      index = palette.push(rgb) - 1;
      if (palette.length > 256) throw new Error("svg-captcha output uses more than 256 colours");
    }
    return index;
  };

  for (const [, tagName, attributeText = ""] of svg.matchAll(/<(\w+)([^>]*)>/g)) {
    if (tagName === "svg") continue;
    if (tagName !== "path") throw new Error(`unsupported element <${tagName}> in svg-captcha output`);
    const attributes = new Map(
      Array.from(attributeText.matchAll(/([\w-]+)="([^"]*)"/g), ([, name, value]) => [name, value]),
    );
    // SVG defaults: fill black, no stroke; svg-captcha sets fill on glyphs and `fill="none" stroke` on noise.
    const fill = attributes.get("fill") ?? "#000000";
    const stroke = attributes.get("stroke") ?? "none";
    let subpaths = flattenPathData(attributes.get("d") ?? "");
    if (fill !== "none") {
      subpaths = rotateGlyph(subpaths, glyphRotationDegrees(), width, height);
      fillNonzero(subpaths, pixels, paletteIndexOf(fill), width, height);
    }
    if (stroke !== "none") {
      const colorIndex = paletteIndexOf(stroke);
      for (const points of subpaths) strokePolyline(points, pixels, colorIndex, width, height);
    }
  }

  while (palette.length < 2 || (palette.length & (palette.length - 1)) !== 0) palette.push(BACKGROUND_COLOR);
  return { width, height, palette, pixels };
}

function randomGlyphRotationDegrees(): number {
  const steps = GLYPH_MAX_ROTATION_DEGREES * ROTATION_STEPS_PER_DEGREE;
  return randomInt(-steps, steps + 1) / ROTATION_STEPS_PER_DEGREE;
}

/**
 * Turns a glyph about the centre of its bounding box, then moves it back inside the image where
 * turning pushed it over an edge: svg-captcha sets glyphs ~4 px below the middle, and its widest (W)
 * turned by 25° is ~46 px high in a 50 px image. A glyph is never moved further out than svg-captcha
 * put it, so at 0° nothing moves. Flattened points turn as the curves would (Bézier curves are
 * affine invariant), into new objects: a subpath's start point is shared with the subpath before.
 */
function rotateGlyph(subpaths: Point[][], degrees: number, width: number, height: number): Point[][] {
  const before = boundsOf(subpaths);
  if (before === null) return subpaths;
  const centreX = (before.left + before.right) / 2;
  const centreY = (before.top + before.bottom) / 2;
  const radians = (degrees * Math.PI) / 180;
  const cos = Math.cos(radians);
  const sin = Math.sin(radians);
  const turned = subpaths.map((points) =>
    points.map(({ x, y }) => ({
      x: centreX + (x - centreX) * cos - (y - centreY) * sin,
      y: centreY + (x - centreX) * sin + (y - centreY) * cos,
    })),
  );
  const after = boundsOf(turned)!;
  const margin = GLYPH_EDGE_MARGIN_PX;
  const shiftX = shiftInside(after.left, after.right, {
    min: Math.min(margin, before.left),
    max: Math.max(width - margin, before.right),
  });
  const shiftY = shiftInside(after.top, after.bottom, {
    min: Math.min(margin, before.top),
    max: Math.max(height - margin, before.bottom),
  });
  if (shiftX !== 0 || shiftY !== 0) {
    for (const points of turned) {
      for (const point of points) {
        point.x += shiftX;
        point.y += shiftY;
      }
    }
  }
  return turned;
}

function boundsOf(subpaths: Point[][]): { left: number; right: number; top: number; bottom: number } | null {
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

/** How far to move the span `low..high` to lie within `bounds`; centred on them if it is too long. */
function shiftInside(low: number, high: number, bounds: { min: number; max: number }): number {
  if (high - low > bounds.max - bounds.min) return (bounds.min + bounds.max - low - high) / 2;
  if (low < bounds.min) return bounds.min - low;
  if (high > bounds.max) return bounds.max - high;
  return 0;
}

function parseColor(color: string): number {
  const hex = /^#([0-9a-f]{6}|[0-9a-f]{3})$/i.exec(color)?.[1];
  if (hex === undefined) throw new Error(`unsupported colour ${JSON.stringify(color)} in svg-captcha output`);
  return Number.parseInt(hex.length === 3 ? hex.replace(/./g, "$&$&") : hex, 16);
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
function fillNonzero(
  subpaths: Point[][],
  pixels: number[],
  colorIndex: number,
  width: number,
  height: number,
): void {
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
          if (rowCoverage[x]! >= FILL_MIN_SAMPLES_INSIDE) pixels[pixelRowStart + x] = colorIndex;
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
function strokePolyline(
  points: Point[],
  pixels: number[],
  colorIndex: number,
  width: number,
  height: number,
): void {
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
        if (offX * offX + offY * offY <= reach * reach) pixels[y * width + x] = colorIndex;
      }
    }
  }
}
