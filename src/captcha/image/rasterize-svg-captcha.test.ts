import svgCaptcha from "svg-captcha";
import { describe, expect, it } from "vitest";
import { IMAGE_ANSWER_ALPHABET } from "./image-challenge.js";
import { type IndexedImage, rasterizeSvgCaptcha } from "./rasterize-svg-captcha.js";

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
function renderWithSvgCaptcha(text: string, width: number): string {
  const render = svgCaptcha as unknown as (text: string, options: object) => string;
  return render(text, { width, height: 50, noise: 3, color: true });
}

describe("rasterizeSvgCaptcha", () => {
  it("fills a path with its colour on a white background", () => {
    const image = rasterizeSvgCaptcha(svgOf(10, 10, '<path fill="#ff0000" d="M2 2L8 2L8 8L2 8Z"/>'), 10, 10);
    expect(image.palette.slice(0, 2)).toEqual([WHITE, 0xff0000]);
    expect(pixelsOf(image, 0xff0000)).toBe(36);
    expect(colorAt(image, 2, 2)).toBe(0xff0000);
    expect(colorAt(image, 7, 7)).toBe(0xff0000);
    expect(colorAt(image, 8, 8)).toBe(WHITE);
    expect(colorAt(image, 1, 5)).toBe(WHITE);
  });

  it("fills by the nonzero rule: a reversed inner outline is a hole, a same-way one is not", () => {
    const outer = "M0 0L12 0L12 12L0 12Z";
    const holed = rasterizeSvgCaptcha(
      svgOf(12, 12, `<path fill="#000" d="${outer}M4 4L4 8L8 8L8 4Z"/>`),
      12,
      12,
    );
    expect(colorAt(holed, 5, 5)).toBe(WHITE);
    expect(colorAt(holed, 1, 1)).toBe(0);
    const overlapping = rasterizeSvgCaptcha(
      svgOf(12, 12, `<path fill="#000" d="${outer}M4 4L8 4L8 8L4 8Z"/>`),
      12,
      12,
    );
    expect(colorAt(overlapping, 5, 5)).toBe(0);
  });

  it("follows quadratic curves rather than their chords", () => {
    // The curve from (2,18) to (2,2) bulges out to (10,10).
    const image = rasterizeSvgCaptcha(
      svgOf(20, 20, '<path fill="#0000ff" d="M2 2L2 18Q18 10 2 2Z"/>'),
      20,
      20,
    );
    expect(colorAt(image, 8, 9)).toBe(0x0000ff);
    expect(colorAt(image, 12, 9)).toBe(WHITE);
  });

  it("strokes unfilled cubic curves about 1.5 pixels wide", () => {
    const image = rasterizeSvgCaptcha(
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
    const image = rasterizeSvgCaptcha(
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
