import { GifReader } from "omggif";
import { describe, expect, it } from "vitest";
import { svgCaptchaToGifDataUri } from "./gif-image.js";
import { createImageChallenge } from "./image-challenge.js";

const GIF_PREFIX = "data:image/gif;base64,";

/** Decodes the data URI's GIF the way a client would, to RGBA pixels. */
function decodeGif(imageDataUri: string) {
  expect(imageDataUri.startsWith(GIF_PREFIX)).toBe(true);
  const bytes = Buffer.from(imageDataUri.slice(GIF_PREFIX.length), "base64");
  const reader = new GifReader(bytes);
  expect(reader.numFrames()).toBe(1);
  const rgba = new Uint8Array(reader.width * reader.height * 4);
  reader.decodeAndBlitFrameRGBA(0, rgba);
  const isInk = (x: number, y: number): boolean => {
    const offset = (y * reader.width + x) * 4;
    return rgba[offset] !== 255 || rgba[offset + 1] !== 255 || rgba[offset + 2] !== 255;
  };
  return { bytes, width: reader.width, height: reader.height, isInk };
}

/** The share of pixels in the box that are not background. */
function inkShare(
  isInk: (x: number, y: number) => boolean,
  box: { left: number; right: number; top: number; bottom: number },
): number {
  let ink = 0;
  for (let y = box.top; y < box.bottom; y += 1) {
    for (let x = box.left; x < box.right; x += 1) if (isInk(x, y)) ink += 1;
  }
  return ink / ((box.right - box.left) * (box.bottom - box.top));
}

const gifOf = (length = 4) => {
  const { answer, imageDataUri } = createImageChallenge({ length });
  return { answer, ...decodeGif(svgCaptchaToGifDataUri(imageDataUri)) };
};

describe("svgCaptchaToGifDataUri", () => {
  it.each([
    [4, 150],
    [5, 180],
    [6, 210],
  ])("draws %i characters as a %i×50 GIF", (length, width) => {
    const { bytes, ...image } = gifOf(length);
    expect(bytes.subarray(0, 6).toString("latin1")).toBe("GIF89a");
    expect(image).toMatchObject({ width, height: 50 });
  });

  it("draws every glyph where svg-captcha lays it out, on a white background", () => {
    for (const length of [4, 5, 6]) {
      const { width, isInk } = gifOf(length);
      // svg-captcha centres glyph i at (width - 2) / (length + 1) * i, vertically in the middle.
      const spacing = (width - 2) / (length + 1);
      const text = {
        left: Math.round(spacing / 2),
        right: Math.round(width - spacing / 2),
        top: 10,
        bottom: 40,
      };
      expect(inkShare(isInk, text)).toBeGreaterThan(0.15);
      for (let glyph = 1; glyph <= length; glyph += 1) {
        const centre = Math.round(spacing * glyph);
        const box = { left: centre - 6, right: centre + 7, top: 10, bottom: 40 };
        expect(inkShare(isInk, box), `glyph ${glyph} of ${length}`).toBeGreaterThan(0.08);
      }
      expect(
        inkShare(isInk, { left: 0, right: width, top: 0, bottom: 50 }),
        "mostly background",
      ).toBeLessThan(0.5);
    }
  });

  it("draws a different picture each time", () => {
    expect(gifOf().bytes.equals(gifOf().bytes)).toBe(false);
  });

  it("refuses what is not the image challenge's SVG", () => {
    expect(() => svgCaptchaToGifDataUri("data:image/png;base64,AAAA")).toThrow(/not an SVG/);
    const sizeless = `data:image/svg+xml;base64,${Buffer.from("<svg><path d='M0 0Z'/></svg>").toString("base64")}`;
    expect(() => svgCaptchaToGifDataUri(sizeless)).toThrow(/width and height/);
  });
});
