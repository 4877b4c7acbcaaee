import svgCaptcha from "svg-captcha";
import { describe, expect, it } from "vitest";
import { IMAGE_ANSWER_ALPHABET } from "./image-challenge.js";
import {
  GLYPH_MAX_ROTATION_DEGREES,
  GLYPH_MAX_SCALE,
  GLYPH_MAX_SHIFT_Y_PX,
  type GlyphPose,
  type IndexedImage,
  type RasterizeOptions,
  rasterizeSvgCaptcha,
  type SineWarp,
} from "./rasterize-svg-captcha.js";

const WHITE = 0xffffff;
const INK = 0x123456;
const UPRIGHT: GlyphPose = { rotationDegrees: 0, scaleX: 1, scaleY: 1, gapPx: 0, shiftYPx: 0 };

function svgOf(width: number, height: number, ...paths: string[]): string {
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0,0,${width},${height}">${paths.join("")}</svg>`;
}

/** A filled rectangle, as svg-captcha writes a glyph. */
function box(left: number, top: number, right: number, bottom: number): string {
  return `<path fill="#333" d="M${left} ${top}L${right} ${top}L${right} ${bottom}L${left} ${bottom}Z"/>`;
}

/** svg-captcha's render function; its bundled typings only declare `create`. */
function renderWithSvgCaptcha(text: string, width: number, noise = 2): string {
  const render = svgCaptcha as unknown as (text: string, options: object) => string;
  return render(text, { width, height: 50, noise, color: true });
}

/** Fixed choices: every glyph upright at its own size, the line centred, no warp, a known ink. */
function rasterizePlain(
  svg: string,
  width: number,
  height: number,
  options: RasterizeOptions = {},
): IndexedImage {
  return rasterizeSvgCaptcha(svg, width, height, {
    glyphPose: () => UPRIGHT,
    lineStartShare: 0.5,
    warp: null,
    inkColor: INK,
    ...options,
  });
}

function isInk(image: IndexedImage, x: number, y: number): boolean {
  return image.pixels[y * image.width + x] !== 0;
}

function countInk(image: IndexedImage): number {
  return image.pixels.filter((index) => index !== 0).length;
}

/** The smallest box holding every pixel that is not background, optionally only within some columns. */
function inkBounds(
  image: IndexedImage,
  columns: { from: number; to: number } = { from: 0, to: image.width },
): { left: number; right: number; top: number; bottom: number } {
  const bounds = { left: image.width, right: -1, top: image.height, bottom: -1 };
  image.pixels.forEach((index, offset) => {
    const x = offset % image.width;
    if (index === 0 || x < columns.from || x >= columns.to) return;
    const y = Math.floor(offset / image.width);
    bounds.left = Math.min(bounds.left, x);
    bounds.right = Math.max(bounds.right, x);
    bounds.top = Math.min(bounds.top, y);
    bounds.bottom = Math.max(bounds.bottom, y);
  });
  return bounds;
}

/** The inked columns of one row, as runs [first, last]. */
function inkRuns(image: IndexedImage, y: number): Array<[number, number]> {
  const runs: Array<[number, number]> = [];
  for (let x = 0; x < image.width; x += 1) {
    if (!isInk(image, x, y)) continue;
    const last = runs.at(-1);
    if (last !== undefined && last[1] === x - 1) last[1] = x;
    else runs.push([x, x]);
  }
  return runs;
}

describe("rasterizeSvgCaptcha drawing", () => {
  it("fills a path with the ink on a white background: two colours, nothing else", () => {
    const image = rasterizePlain(svgOf(10, 10, box(2, 2, 8, 8)), 10, 10);
    expect(image.palette).toEqual([WHITE, INK]);
    expect(countInk(image)).toBe(36);
    expect(isInk(image, 2, 2)).toBe(true);
    expect(isInk(image, 7, 7)).toBe(true);
    expect(isInk(image, 8, 8)).toBe(false);
    expect(isInk(image, 1, 5)).toBe(false);
  });

  it("fills by the nonzero rule: a reversed inner outline is a hole, a same-way one is not", () => {
    const outer = "M4 4L16 4L16 16L4 16Z";
    const holed = rasterizePlain(
      svgOf(20, 20, `<path fill="#000" d="${outer}M8 8L8 12L12 12L12 8Z"/>`),
      20,
      20,
    );
    expect(isInk(holed, 9, 9)).toBe(false);
    expect(isInk(holed, 5, 5)).toBe(true);
    const overlapping = rasterizePlain(
      svgOf(20, 20, `<path fill="#000" d="${outer}M8 8L12 8L12 12L8 12Z"/>`),
      20,
      20,
    );
    expect(isInk(overlapping, 9, 9)).toBe(true);
  });

  it("follows quadratic curves rather than their chords", () => {
    // The curve from (7,18) to (7,2) bulges out to (15,10), half way to its control point; the
    // shape is 8 px wide, so centring it moves it 1 px left.
    const image = rasterizePlain(svgOf(20, 20, '<path fill="#000" d="M7 2L7 18Q23 10 7 2Z"/>'), 20, 20);
    expect(isInk(image, 12, 9)).toBe(true);
    expect(isInk(image, 16, 9)).toBe(false);
  });

  it("strokes unfilled cubic curves about 1.5 pixels wide, where svg-captcha put them", () => {
    const image = rasterizePlain(
      svgOf(40, 20, '<path d="M1 10 C13 0,27 20,39 10" stroke="#00ff00" fill="none"/>'),
      40,
      20,
    );
    expect(isInk(image, 1, 9)).toBe(true);
    expect(isInk(image, 20, 0)).toBe(false);
    expect(countInk(image)).toBeGreaterThan(40);
    expect(countInk(image)).toBeLessThan(100);
  });

  it("draws glyphs and noise lines in one ink, whatever colours svg-captcha gave them", () => {
    const svg = renderWithSvgCaptcha("KM7Q", 150, 3);
    expect(new Set(Array.from(svg.matchAll(/(?:fill|stroke)="(#[0-9a-f]{6})"/g), ([, c]) => c)).size).toBe(7);
    const image = rasterizeSvgCaptcha(svg, 150, 50);
    expect(image.palette).toHaveLength(2);
    expect(image.palette[0]).toBe(WHITE);
    expect(new Set(image.pixels)).toEqual(new Set([0, 1]));
  });

  it("picks a dark ink at random per image", () => {
    const svg = renderWithSvgCaptcha("KM7Q", 150);
    const inks = new Set(Array.from({ length: 10 }, () => rasterizeSvgCaptcha(svg, 150, 50).palette[1]!));
    expect(inks.size).toBeGreaterThan(5);
    for (const ink of inks) {
      const brightest = Math.max(ink >> 16, (ink >> 8) & 0xff, ink & 0xff);
      expect(brightest, ink.toString(16)).toBeLessThan(160);
    }
  });

  it.each([
    ["a relative command", '<path fill="#000" d="m1 1l5 0l0 5z"/>'],
    ["an arc", '<path fill="#000" d="M1 1A2 2 0 0 1 5 5Z"/>'],
    ["a number before any command", '<path fill="#000" d="1 1L5 5Z"/>'],
    ["a command missing a coordinate", '<path fill="#000" d="M1 1L5Z"/>'],
    ["another element", '<rect width="100%" height="100%" fill="#fff"/>'],
    ["text", "<text>AB3K</text>"],
  ])("refuses %s instead of drawing an incomplete picture", (_, element) => {
    expect(() => rasterizeSvgCaptcha(svgOf(10, 10, element), 10, 10)).toThrow(Error);
  });

  it("draws every character of the alphabet from svg-captcha's outlines", () => {
    // An outline using a command we do not draw would throw here.
    for (const character of IMAGE_ANSWER_ALPHABET) {
      const image = rasterizeSvgCaptcha(renderWithSvgCaptcha(character.repeat(4), 150, 0), 150, 50);
      expect(countInk(image), character).toBeGreaterThan(4 * 80);
    }
  });
});

describe("rasterizeSvgCaptcha glyph poses", () => {
  // A bar 20 px wide and 4 high, centred on (20, 20).
  const bar = svgOf(40, 40, box(10, 18, 30, 22));

  it("turns each glyph about the centre of its own box", () => {
    const upright = rasterizePlain(bar, 40, 40);
    expect(inkBounds(upright)).toEqual({ left: 10, right: 29, top: 18, bottom: 21 });
    const turned = rasterizePlain(bar, 40, 40, { glyphPose: () => ({ ...UPRIGHT, rotationDegrees: 90 }) });
    expect(inkBounds(turned)).toEqual({ left: 18, right: 21, top: 10, bottom: 29 });
    expect(countInk(turned)).toBe(countInk(upright));
  });

  it("turns clockwise for a positive angle, as SVG's rotate() does with y pointing down", () => {
    // At +45° the bar's left end goes up and its right end down.
    const turned = rasterizePlain(bar, 40, 40, { glyphPose: () => ({ ...UPRIGHT, rotationDegrees: 45 }) });
    expect(isInk(turned, 14, 14)).toBe(true);
    expect(isInk(turned, 25, 25)).toBe(true);
    expect(isInk(turned, 14, 25)).toBe(false);
  });

  it("scales a glyph's width and height by their own factors", () => {
    const scaled = rasterizePlain(bar, 40, 40, { glyphPose: () => ({ ...UPRIGHT, scaleX: 0.5, scaleY: 2 }) });
    expect(inkBounds(scaled)).toEqual({ left: 15, right: 24, top: 16, bottom: 23 });
  });

  it("asks for one pose per glyph from left to right, though svg-captcha shuffles the document order", () => {
    const svg = svgOf(
      60,
      20,
      box(42, 8, 52, 12),
      '<path d="M1 18 C13 16,27 19,59 18" stroke="#0f0" fill="none"/>',
      box(8, 8, 18, 12),
      box(25, 8, 35, 12),
    );
    const places: number[] = [];
    const image = rasterizePlain(svg, 60, 20, {
      lineStartShare: 0,
      // Only the leftmost glyph stands upright: 4 px wide and 10 high, at columns 1 to 4.
      glyphPose: (place) => {
        places.push(place);
        return place === 0 ? { ...UPRIGHT, rotationDegrees: 90 } : UPRIGHT;
      },
    });
    expect(places).toEqual([0, 1, 2]);
    expect([isInk(image, 2, 6), isInk(image, 2, 13)]).toEqual([true, true]);
    expect([isInk(image, 8, 6), isInk(image, 8, 10)]).toEqual([false, true]);
  });

  it("sets glyphs one after the other at the gap asked, overlapping where it is negative", () => {
    const twoBars = svgOf(60, 20, box(5, 8, 15, 12), box(40, 8, 50, 12));
    const laidOut = (gapPx: number) =>
      inkRuns(
        rasterizePlain(twoBars, 60, 20, { lineStartShare: 0, glyphPose: () => ({ ...UPRIGHT, gapPx }) }),
        9,
      );
    expect(laidOut(3)).toEqual([
      [1, 10],
      [14, 23],
    ]);
    expect(laidOut(-4)).toEqual([[1, 16]]);
  });

  it("starts the line where lineStartShare puts it in the free width", () => {
    expect(inkBounds(rasterizePlain(bar, 40, 40, { lineStartShare: 0 })).left).toBe(1);
    expect(inkBounds(rasterizePlain(bar, 40, 40, { lineStartShare: 1 })).right).toBe(38);
  });

  it("moves a glyph up or down by its shift, but never out of the image", () => {
    const shifted = (shiftYPx: number) =>
      inkBounds(rasterizePlain(bar, 40, 40, { glyphPose: () => ({ ...UPRIGHT, shiftYPx }) }));
    expect(shifted(-6).top).toBe(12);
    expect(shifted(100).bottom).toBe(38);
    expect(shifted(-100).top).toBe(1);
  });

  it("shrinks a line too wide, or a glyph too tall, for the image", () => {
    const wide = svgOf(40, 40, box(0, 18, 20, 22), box(20, 18, 40, 22), box(40, 18, 60, 22));
    expect(inkBounds(rasterizePlain(wide, 40, 40))).toMatchObject({ left: 1, right: 38 });
    const tall = svgOf(40, 40, box(18, 0, 22, 60));
    expect(inkBounds(rasterizePlain(tall, 40, 40))).toMatchObject({ top: 1, bottom: 38 });
  });

  it("keeps every character clear of the edges at the largest angle, size, shift and warp", () => {
    const warp: SineWarp = {
      amplitudeXPx: 3,
      periodYPx: 35,
      phaseX: 0,
      amplitudeYPx: 4,
      periodXPx: 45,
      phaseY: 0,
    };
    for (const [length, width] of [
      [4, 150],
      [6, 210],
    ] as const) {
      for (const character of IMAGE_ANSWER_ALPHABET) {
        const svg = renderWithSvgCaptcha(character.repeat(length), width, 0);
        for (const rotationDegrees of [-GLYPH_MAX_ROTATION_DEGREES, GLYPH_MAX_ROTATION_DEGREES]) {
          for (const [lineStartShare, shiftYPx] of [
            [0, -GLYPH_MAX_SHIFT_Y_PX],
            [1, GLYPH_MAX_SHIFT_Y_PX],
          ] as const) {
            const pose = {
              rotationDegrees,
              scaleX: GLYPH_MAX_SCALE,
              scaleY: GLYPH_MAX_SCALE,
              gapPx: 2,
              shiftYPx,
            };
            const image = rasterizePlain(svg, width, 50, { glyphPose: () => pose, lineStartShare, warp });
            const bounds = inkBounds(image);
            const where = `${length} × ${character}, ${rotationDegrees}°, line start ${lineStartShare}`;
            expect(bounds.left, where).toBeGreaterThanOrEqual(1);
            expect(bounds.top, where).toBeGreaterThanOrEqual(1);
            expect(bounds.right, where).toBeLessThanOrEqual(width - 2);
            expect(bounds.bottom, where).toBeLessThanOrEqual(48);
          }
        }
      }
    }
  });
});

describe("rasterizeSvgCaptcha warp", () => {
  it("bends a straight line into a wave", () => {
    const line = svgOf(60, 20, '<path d="M0 10 L60 10" stroke="#000" fill="none"/>');
    const warp: SineWarp = {
      amplitudeXPx: 0,
      periodYPx: 40,
      phaseX: 0,
      amplitudeYPx: 3,
      periodXPx: 40,
      phaseY: 0,
    };
    const image = rasterizePlain(line, 60, 20, { warp });
    const rowAt = (x: number) => inkBounds(image, { from: x, to: x + 1 }).top;
    // sin is 1 at x = 10 and −1 at x = 30 (a period of 40 px).
    expect(rowAt(10) - rowAt(30)).toBe(6);
    expect(rowAt(0)).toBe(rowAt(20));
  });

  it("keeps glyphs inside by the warp's reach", () => {
    const bar = svgOf(40, 40, box(10, 18, 30, 22));
    const warp: SineWarp = {
      amplitudeXPx: 4,
      periodYPx: 1000,
      phaseX: -Math.PI / 2,
      amplitudeYPx: 0,
      periodXPx: 40,
      phaseY: 0,
    };
    // The whole drawing moves about 4 px left, so the line starts 4 px further in.
    expect(inkBounds(rasterizePlain(bar, 40, 40, { lineStartShare: 0, warp })).left).toBe(1);
  });
});

describe("rasterizeSvgCaptcha randomness", () => {
  it("draws a fresh pose per glyph, a fresh layout and a fresh warp when given none", () => {
    const svg = renderWithSvgCaptcha("KM7Q", 150, 0);
    const pictures = new Set(
      Array.from({ length: 5 }, () => rasterizeSvgCaptcha(svg, 150, 50).pixels.join("")),
    );
    expect(pictures.size).toBe(5);
  });
});
