import svgCaptcha from "svg-captcha";
import { describe, expect, it } from "vitest";
import { IMAGE_ANSWER_ALPHABET } from "./image-challenge.js";
import {
  GLYPH_MAX_ROTATION_DEGREES,
  type IndexedImage,
  rasterizeSvgCaptcha,
} from "./rasterize-svg-captcha.js";

const WHITE = 0xffffff;

function svgOf(width: number, height: number, ...paths: string[]): string {
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0,0,${width},${height}">${paths.join("")}</svg>`;
}

function colorAt(image: IndexedImage, x: number, y: number): number | undefined {
  return image.palette[image.pixels[y * image.width + x] ?? -1];
}

function pixelsOf(image: IndexedImage, color: number): number {
  return image.pixels.filter((index) => image.palette[index] === color).length;
}

/** svg-captcha's render function; its bundled typings only declare `create`. */
function renderWithSvgCaptcha(text: string, width: number, noise = 3): string {
  const render = svgCaptcha as unknown as (text: string, options: object) => string;
  return render(text, { width, height: 50, noise, color: true });
}

/** Rasterizes with every glyph turned by the same fixed angle. */
function rasterizeTurned(svg: string, width: number, height: number, degrees: number): IndexedImage {
  return rasterizeSvgCaptcha(svg, width, height, { glyphRotationDegrees: () => degrees });
}

const rasterizeUpright = (svg: string, width: number, height: number) =>
  rasterizeTurned(svg, width, height, 0);

function countInk(image: IndexedImage): number {
  return image.pixels.filter((index) => image.palette[index] !== WHITE).length;
}

/** The smallest box holding every pixel that is not background. */
function inkBounds(image: IndexedImage): { left: number; right: number; top: number; bottom: number } {
  const box = { left: image.width, right: -1, top: image.height, bottom: -1 };
  image.pixels.forEach((index, offset) => {
    if (image.palette[index] === WHITE) return;
    const x = offset % image.width;
    const y = Math.floor(offset / image.width);
    box.left = Math.min(box.left, x);
    box.right = Math.max(box.right, x);
    box.top = Math.min(box.top, y);
    box.bottom = Math.max(box.bottom, y);
  });
  return box;
}

describe("rasterizeSvgCaptcha", () => {
  it("fills a path with its colour on a white background", () => {
    const image = rasterizeUpright(svgOf(10, 10, '<path fill="#ff0000" d="M2 2L8 2L8 8L2 8Z"/>'), 10, 10);
    expect(image.palette.slice(0, 2)).toEqual([WHITE, 0xff0000]);
    expect(pixelsOf(image, 0xff0000)).toBe(36);
    expect(colorAt(image, 2, 2)).toBe(0xff0000);
    expect(colorAt(image, 7, 7)).toBe(0xff0000);
    expect(colorAt(image, 8, 8)).toBe(WHITE);
    expect(colorAt(image, 1, 5)).toBe(WHITE);
  });

  it("fills by the nonzero rule: a reversed inner outline is a hole, a same-way one is not", () => {
    const outer = "M0 0L12 0L12 12L0 12Z";
    const holed = rasterizeUpright(
      svgOf(12, 12, `<path fill="#000" d="${outer}M4 4L4 8L8 8L8 4Z"/>`),
      12,
      12,
    );
    expect(colorAt(holed, 5, 5)).toBe(WHITE);
    expect(colorAt(holed, 1, 1)).toBe(0);
    const overlapping = rasterizeUpright(
      svgOf(12, 12, `<path fill="#000" d="${outer}M4 4L8 4L8 8L4 8Z"/>`),
      12,
      12,
    );
    expect(colorAt(overlapping, 5, 5)).toBe(0);
  });

  it("follows quadratic curves rather than their chords", () => {
    // The curve from (2,18) to (2,2) bulges out to (10,10).
    const image = rasterizeUpright(svgOf(20, 20, '<path fill="#0000ff" d="M2 2L2 18Q18 10 2 2Z"/>'), 20, 20);
    expect(colorAt(image, 8, 9)).toBe(0x0000ff);
    expect(colorAt(image, 12, 9)).toBe(WHITE);
  });

  it("strokes unfilled cubic curves about 1.5 pixels wide", () => {
    const image = rasterizeUpright(
      svgOf(40, 20, '<path d="M1 10 C13 0,27 20,39 10" stroke="#00ff00" fill="none"/>'),
      40,
      20,
    );
    expect(colorAt(image, 1, 9)).toBe(0x00ff00);
    expect(colorAt(image, 20, 0)).toBe(WHITE);
    expect(pixelsOf(image, 0x00ff00)).toBeGreaterThan(40);
    expect(pixelsOf(image, 0x00ff00)).toBeLessThan(100);
  });

  it("paints later paths over earlier ones, as SVG does", () => {
    const image = rasterizeUpright(
      svgOf(
        10,
        10,
        '<path fill="#ff0000" d="M0 0L10 0L10 10L0 10Z"/>',
        '<path fill="#00ff00" d="M0 0L5 0L5 10L0 10Z"/>',
      ),
      10,
      10,
    );
    expect(colorAt(image, 2, 5)).toBe(0x00ff00);
    expect(colorAt(image, 7, 5)).toBe(0xff0000);
  });

  it.each([
    ["a relative command", '<path fill="#000" d="m1 1l5 0l0 5z"/>'],
    ["an arc", '<path fill="#000" d="M1 1A2 2 0 0 1 5 5Z"/>'],
    ["a number before any command", '<path fill="#000" d="1 1L5 5Z"/>'],
    ["a command missing a coordinate", '<path fill="#000" d="M1 1L5Z"/>'],
    ["a named colour", '<path fill="red" d="M1 1L5 1L5 5Z"/>'],
    ["another element", '<rect width="100%" height="100%" fill="#fff"/>'],
    ["text", "<text>AB3K</text>"],
  ])("refuses %s instead of drawing an incomplete picture", (_, element) => {
    expect(() => rasterizeSvgCaptcha(svgOf(10, 10, element), 10, 10)).toThrow(Error);
  });

  it("draws every glyph and noise line of svg-captcha's output in its own colour", () => {
    // Every character of the alphabet, so an outline using a command we do not draw would throw here.
    for (let start = 0; start < IMAGE_ANSWER_ALPHABET.length; start += 4) {
      const text = IMAGE_ANSWER_ALPHABET.slice(start, start + 4).padEnd(4, "A");
      const svg = renderWithSvgCaptcha(text, 150);
      const glyphColors = Array.from(svg.matchAll(/<path fill="(#[0-9a-f]{6})"/g), ([, color]) => color);
      const noiseColors = Array.from(svg.matchAll(/stroke="(#[0-9a-f]{6})"/g), ([, color]) => color);
      expect(glyphColors).toHaveLength(4);
      expect(noiseColors).toHaveLength(3);

      const image = rasterizeSvgCaptcha(svg, 150, 50);
      expect(image.pixels).toHaveLength(150 * 50);
      expect(image.palette.length & (image.palette.length - 1)).toBe(0);
      // Later paths may cover parts of earlier ones, never all of a glyph or of a line across the image.
      for (const color of glyphColors)
        expect(pixelsOf(image, Number.parseInt(color!.slice(1), 16))).toBeGreaterThan(60);
      for (const color of noiseColors)
        expect(pixelsOf(image, Number.parseInt(color!.slice(1), 16))).toBeGreaterThan(20);
    }
  });
});

describe("rasterizeSvgCaptcha glyph rotation", () => {
  // A bar 20 px wide and 4 high, centred on (20, 20).
  const bar = svgOf(40, 40, '<path fill="#000" d="M10 18L30 18L30 22L10 22Z"/>');

  it("turns each glyph about the centre of its own bounding box", () => {
    const upright = rasterizeUpright(bar, 40, 40);
    expect(inkBounds(upright)).toEqual({ left: 10, right: 29, top: 18, bottom: 21 });
    const turned = rasterizeTurned(bar, 40, 40, 90);
    expect(inkBounds(turned)).toEqual({ left: 18, right: 21, top: 10, bottom: 29 });
    expect(pixelsOf(turned, 0)).toBe(pixelsOf(upright, 0));
  });

  it("turns clockwise for a positive angle, as SVG's rotate() does with y pointing down", () => {
    // At +45° the bar's left end goes up and its right end down.
    const turned = rasterizeTurned(bar, 40, 40, 45);
    expect(colorAt(turned, 14, 14)).toBe(0);
    expect(colorAt(turned, 25, 25)).toBe(0);
    expect(colorAt(turned, 14, 25)).toBe(WHITE);
  });

  it("asks for one angle per glyph, in document order, and never for a noise line", () => {
    const svg = svgOf(
      40,
      40,
      '<path fill="#ff0000" d="M2 10L18 10L18 12L2 12Z"/>',
      '<path d="M1 35 C13 30,27 38,39 35" stroke="#00ff00" fill="none"/>',
      '<path fill="#0000ff" d="M22 10L38 10L38 12L22 12Z"/>',
    );
    const angles = [0, 90];
    let asked = 0;
    const image = rasterizeSvgCaptcha(svg, 40, 40, { glyphRotationDegrees: () => angles[asked++] ?? 0 });
    expect(asked).toBe(2);
    expect(colorAt(image, 3, 10)).toBe(0xff0000);
    expect(colorAt(image, 30, 4)).toBe(0x0000ff);
    expect(colorAt(image, 24, 10)).toBe(WHITE);
    const upright = rasterizeUpright(svg, 40, 40);
    expect(pixelsOf(image, 0x00ff00)).toBe(pixelsOf(upright, 0x00ff00));
  });

  it("draws svg-captcha's glyphs differently at two fixed angles", () => {
    const svg = renderWithSvgCaptcha("KM7Q", 150, 0);
    const left = rasterizeTurned(svg, 150, 50, -20);
    const right = rasterizeTurned(svg, 150, 50, 20);
    const differing = left.pixels.filter((index, offset) => index !== right.pixels[offset]).length;
    expect(differing).toBeGreaterThan(400);
    // The same angle draws the same picture: the difference is the rotation's, not chance's.
    expect(rasterizeTurned(svg, 150, 50, 20).pixels).toEqual(right.pixels);
  });

  it("keeps every character whole inside the image at the largest angles, first to last place", () => {
    for (const [length, width] of [
      [4, 150],
      [6, 210],
    ] as const) {
      for (const character of IMAGE_ANSWER_ALPHABET) {
        for (const place of [0, length - 1]) {
          // Only the glyph at `place` is drawn: the others are spaces.
          const svg = renderWithSvgCaptcha(
            " ".repeat(place) + character.padEnd(length - place, " "),
            width,
            0,
          );
          const upright = countInk(rasterizeUpright(svg, width, 50));
          for (const degrees of [-GLYPH_MAX_ROTATION_DEGREES, GLYPH_MAX_ROTATION_DEGREES]) {
            const turned = rasterizeTurned(svg, width, 50, degrees);
            const box = inkBounds(turned);
            const where = `${character} at place ${place} of ${length}, ${degrees}°`;
            expect(box.left, where).toBeGreaterThanOrEqual(1);
            expect(box.top, where).toBeGreaterThanOrEqual(1);
            expect(box.right, where).toBeLessThanOrEqual(width - 2);
            expect(box.bottom, where).toBeLessThanOrEqual(48);
            // Turning a glyph neither loses nor grows much of its ink.
            expect(countInk(turned) / upright, where).toBeGreaterThan(0.8);
            expect(countInk(turned) / upright, where).toBeLessThan(1.25);
          }
        }
      }
    }
  });

  it("draws a fresh random angle per glyph when given none", () => {
    const svg = renderWithSvgCaptcha("KM7Q", 150, 0);
    const pictures = new Set(
      Array.from({ length: 5 }, () => rasterizeSvgCaptcha(svg, 150, 50).pixels.join("")),
    );
    expect(pictures.size).toBe(5);
  });
});
