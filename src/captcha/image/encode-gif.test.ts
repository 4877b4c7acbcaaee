import { randomInt } from "node:crypto";
import { GifReader } from "omggif";
import { describe, expect, it } from "vitest";
import { encodeGif } from "./encode-gif.js";
import type { IndexedImage } from "./rasterize-svg-captcha.js";

/** Decodes the GIF the way a client would, to one 0xRRGGBB colour per pixel. */
function decode(gif: Buffer): { width: number; height: number; frames: number; colors: number[] } {
  const reader = new GifReader(gif);
  const rgba = new Uint8Array(reader.width * reader.height * 4);
  reader.decodeAndBlitFrameRGBA(0, rgba);
  const colors: number[] = [];
  for (let offset = 0; offset < rgba.length; offset += 4) {
    colors.push((rgba[offset]! << 16) | (rgba[offset + 1]! << 8) | rgba[offset + 2]!);
  }
  return { width: reader.width, height: reader.height, frames: reader.numFrames(), colors };
}

describe("encodeGif", () => {
  it("writes one GIF89a frame that decodes to the same colours, pixel for pixel", () => {
    const image: IndexedImage = {
      width: 3,
      height: 2,
      palette: [0xffffff, 0xff0000, 0x00ff00, 0x0000ff],
      pixels: [0, 1, 2, 3, 2, 1],
    };
    const gif = encodeGif(image);
    expect(gif.subarray(0, 6).toString("latin1")).toBe("GIF89a");
    expect(decode(gif)).toEqual({
      width: 3,
      height: 2,
      frames: 1,
      colors: [0xffffff, 0xff0000, 0x00ff00, 0x0000ff, 0x00ff00, 0xff0000],
    });
  });

  it("fits the worst case, 256 colours in random order, in the buffer it sizes up front", () => {
    const width = 210;
    const height = 50;
    const palette = Array.from({ length: 256 }, (_, index) => index * 0x010101);
    const pixels = Array.from({ length: width * height }, () => randomInt(256));
    const decoded = decode(encodeGif({ width, height, palette, pixels }));
    expect(decoded.colors).toEqual(pixels.map((index) => palette[index]));
  });
});
