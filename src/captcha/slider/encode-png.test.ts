import { randomBytes } from "node:crypto";
import { PNG } from "pngjs";
import { describe, expect, it } from "vitest";
import { encodePng } from "./encode-png.js";

describe("encodePng", () => {
  it.each([3, 4] as const)(
    "writes %i-channel pixels that a PNG decoder reads back byte for byte",
    (channels) => {
      const width = 37;
      const height = 23;
      const pixels = new Uint8Array(randomBytes(width * height * channels));
      const decoded = PNG.sync.read(encodePng(width, height, channels, pixels));
      expect([decoded.width, decoded.height]).toEqual([width, height]);
      for (let pixel = 0; pixel < width * height; pixel += 1) {
        const rgba = decoded.data.subarray(pixel * 4, pixel * 4 + 4);
        const expected = [...pixels.subarray(pixel * channels, pixel * channels + channels)];
        expect([...rgba.subarray(0, channels)], `pixel ${pixel}`).toEqual(expected);
        if (channels === 3) expect(rgba[3]).toBe(255);
      }
    },
  );

  it("refuses pixels that do not fill the picture", () => {
    expect(() => encodePng(2, 2, 3, new Uint8Array(11))).toThrow(RangeError);
  });
});
