import { describe, expect, it } from "vitest";
import { createSliderBackgrounds } from "./slider-backgrounds.js";

function meanOf(pixels: Uint8Array): number[] {
  const sums = [0, 0, 0];
  for (let index = 0; index < pixels.length; index += 1) sums[index % 3]! += pixels[index]!;
  return sums.map((sum) => sum / (pixels.length / 3));
}

describe("createSliderBackgrounds", () => {
  it("hands out RGB pictures of the size asked, never one colour", () => {
    const backgrounds = createSliderBackgrounds();
    for (const [width, height] of [
      [310, 155],
      [400, 200],
    ] as const) {
      const { pixels } = backgrounds.next(width, height);
      expect(pixels).toHaveLength(width * height * 3);
      const colours = new Set<number>();
      for (let index = 0; index < pixels.length; index += 3) {
        colours.add((pixels[index]! << 16) | (pixels[index + 1]! << 8) | pixels[index + 2]!);
      }
      expect(colours.size).toBeGreaterThan(20);
    }
  });

  it("keeps every level on the 4-level colour steps that keep the PNG small", () => {
    const backgrounds = createSliderBackgrounds();
    for (let run = 0; run < 5; run += 1) {
      const { pixels } = backgrounds.next(310, 155);
      expect(pixels.every((level) => level % 4 === 0 || level === 255)).toBe(true);
    }
  });

  it("gives each challenge its own variant, even of a pool's only picture", () => {
    const backgrounds = createSliderBackgrounds({ poolSize: 1 });
    const seen = new Set<string>();
    for (let run = 0; run < 10; run += 1) {
      seen.add(Buffer.from(backgrounds.next(310, 155).pixels).toString("base64"));
    }
    expect(seen.size).toBe(10);
  });

  it("tells about the picture's mean colour, for a fill that suits it", () => {
    const backgrounds = createSliderBackgrounds();
    for (let run = 0; run < 10; run += 1) {
      const { pixels, meanColor } = backgrounds.next(310, 155);
      const actual = meanOf(pixels);
      // The mean is the whole pool picture's; the variant shows a window of it.
      for (const [index, channel] of meanColor.entries()) {
        expect(Math.abs(channel - actual[index]!)).toBeLessThan(30);
      }
    }
  });
});
