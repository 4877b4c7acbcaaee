import { PNG } from "pngjs";
import { describe, expect, it } from "vitest";
import { createSliderChallenge, SLIDER_TOLERANCE_PX, sliderAnswerMatches } from "./slider-challenge.js";

function decode(base64: string): PNG {
  return PNG.sync.read(Buffer.from(base64, "base64"));
}

function alphaAt(png: PNG, x: number, y: number): number {
  return png.data[(y * png.width + x) * 4 + 3]!;
}

/** Pixels of the piece that are fully opaque and whose four neighbours are too: inside, not outline. */
function interiorPixels(piece: PNG): Array<[number, number]> {
  const inside: Array<[number, number]> = [];
  const opaque = (x: number, y: number): boolean =>
    x >= 0 && y >= 0 && x < piece.width && y < piece.height && alphaAt(piece, x, y) === 255;
  for (let y = 0; y < piece.height; y += 1) {
    for (let x = 0; x < piece.width; x += 1) {
      if (opaque(x, y) && opaque(x - 1, y) && opaque(x + 1, y) && opaque(x, y - 1) && opaque(x, y + 1)) {
        inside.push([x, y]);
      }
    }
  }
  return inside;
}

describe("createSliderChallenge", () => {
  it("returns PNGs of the claimed sizes: background width×height, piece pieceSize×height (AJ-Captcha)", () => {
    const challenge = createSliderChallenge();
    expect(challenge.width).toBe(310);
    expect(challenge.height).toBe(155);
    const background = decode(challenge.backgroundPngBase64);
    const piece = decode(challenge.piecePngBase64);
    expect([background.width, background.height]).toEqual([310, 155]);
    expect([piece.width, piece.height]).toEqual([47, 155]);
  });

  it("honours custom sizes", () => {
    const challenge = createSliderChallenge({ width: 400, height: 200, pieceSize: 60 });
    const piece = decode(challenge.piecePngBase64);
    expect([decode(challenge.backgroundPngBase64).width, challenge.height]).toEqual([400, 200]);
    expect([piece.width, piece.height]).toEqual([60, 200]);
    expect(challenge.x + 60).toBeLessThanOrEqual(400);
    expect(challenge.y + 60).toBeLessThanOrEqual(200);
  });

  it("makes the piece transparent outside its shape and opaque inside it", () => {
    const { y, piecePngBase64 } = createSliderChallenge();
    const piece = decode(piecePngBase64);
    for (let row = 0; row < piece.height; row += 1) {
      if (row >= y && row < y + 47) continue;
      for (let column = 0; column < piece.width; column += 1) {
        expect(alphaAt(piece, column, row)).toBe(0);
      }
    }
    // Corners of the piece's box lie outside a square-with-knobs shape.
    expect(alphaAt(piece, 0, y)).toBe(0);
    expect(alphaAt(piece, 46, y)).toBe(0);
    expect(alphaAt(piece, 46, y + 46)).toBe(0);
    // Its body is solid.
    expect(alphaAt(piece, 18, y + 27)).toBe(255);
    const transparent = Array.from({ length: 47 * 47 }, (_, index) =>
      alphaAt(piece, index % 47, y + Math.floor(index / 47)),
    ).filter((alpha) => alpha === 0).length;
    expect(transparent).toBeGreaterThan(47 * 47 * 0.15);
  });

  it("shades the gap at (x, y) and a decoy of the same shape at the same height, apart from it", () => {
    for (let run = 0; run < 10; run += 1) {
      const { x, y, decoyX, backgroundPngBase64, piecePngBase64 } = createSliderChallenge();
      expect(decoyX).not.toBeNull();
      expect(Math.abs(x - decoyX!)).toBeGreaterThanOrEqual(47);
      expect(decoyX).toBeGreaterThanOrEqual(94);
      expect(decoyX).toBeLessThanOrEqual(310 - 47 - 2);
      const background = decode(backgroundPngBase64);
      const piece = decode(piecePngBase64);
      const inside = interiorPixels(piece);
      expect(inside.length).toBeGreaterThan(500);
      const brightness = (png: PNG, offsetX: number) =>
        inside.reduce((sum, [column, row]) => {
          const index = (row * png.width + offsetX + column) * 4;
          return sum + png.data[index]! + png.data[index + 1]! + png.data[index + 2]!;
        }, 0) / inside.length;
      // Both gaps are the same dark fill, well below the piece cut from the picture.
      expect(brightness(background, x)).toBeLessThan(brightness(piece, 0) * 0.75);
      expect(Math.abs(brightness(background, x) - brightness(background, decoyX!))).toBeLessThan(6);
      expect(y).toBeGreaterThanOrEqual(2);
    }
  });

  it("fills each gap with one colour under its own noise, so it holds nothing of the piece's picture", () => {
    const { x, decoyX, backgroundPngBase64, piecePngBase64 } = createSliderChallenge();
    const background = decode(backgroundPngBase64);
    const inside = interiorPixels(decode(piecePngBase64));
    const colours = (offsetX: number) =>
      inside.map(([column, row]) =>
        background.data.readUIntBE((row * background.width + offsetX + column) * 4, 3),
      );
    expect(new Set(colours(x)).size).toBeGreaterThan(100);
    const decoyColours = colours(decoyX!);
    expect(colours(x).filter((colour, index) => colour === decoyColours[index]).length).toBeLessThan(
      inside.length / 20,
    );
  });

  it("tosses a coin for which of the two places is the gap", () => {
    let gapLeft = 0;
    for (let run = 0; run < 100; run += 1) {
      const { x, decoyX } = createSliderChallenge();
      if (x < decoyX!) gapLeft += 1;
    }
    expect(gapLeft).toBeGreaterThan(30);
    expect(gapLeft).toBeLessThan(70);
  });

  it("draws no decoy where the canvas has no room for two gaps apart", () => {
    const { x, decoyX } = createSliderChallenge({ width: 188 });
    expect(decoyX).toBeNull();
    expect(x).toBeGreaterThanOrEqual(94);
  });

  it("places the gap at random, never near the left edge where the piece starts", () => {
    const xs = new Set<number>();
    for (let run = 0; run < 40; run += 1) {
      const { x, y } = createSliderChallenge();
      expect(x).toBeGreaterThanOrEqual(94);
      expect(x).toBeLessThanOrEqual(310 - 47 - 2);
      expect(y).toBeGreaterThanOrEqual(2);
      expect(y).toBeLessThanOrEqual(155 - 47 - 2);
      xs.add(x);
    }
    expect(xs.size).toBeGreaterThan(20);
  });

  it("draws a different background each time", () => {
    expect(createSliderChallenge().backgroundPngBase64).not.toBe(createSliderChallenge().backgroundPngBase64);
  });

  it("refuses impossible sizes", () => {
    expect(() => createSliderChallenge({ pieceSize: 10 })).toThrow(RangeError);
    expect(() => createSliderChallenge({ width: 150 })).toThrow(RangeError);
    expect(() => createSliderChallenge({ height: 50 })).toThrow(RangeError);
    expect(() => createSliderChallenge({ width: 5000 })).toThrow(RangeError);
    expect(() => createSliderChallenge({ width: 310.5 })).toThrow(RangeError);
  });
});

describe("sliderAnswerMatches", () => {
  it("accepts answers within the tolerance, fractional ones included", () => {
    expect(SLIDER_TOLERANCE_PX).toBe(5);
    expect(sliderAnswerMatches(150, 150)).toBe(true);
    expect(sliderAnswerMatches(150, 145)).toBe(true);
    expect(sliderAnswerMatches(150, 155)).toBe(true);
    expect(sliderAnswerMatches(150, 153.87)).toBe(true);
  });

  it("refuses answers outside the tolerance", () => {
    expect(sliderAnswerMatches(150, 144)).toBe(false);
    expect(sliderAnswerMatches(150, 155.01)).toBe(false);
    expect(sliderAnswerMatches(150, 0)).toBe(false);
  });

  it("honours a custom tolerance", () => {
    expect(sliderAnswerMatches(150, 158, 8)).toBe(true);
    expect(sliderAnswerMatches(150, 152, 1)).toBe(false);
  });

  it("refuses non-finite answers", () => {
    expect(sliderAnswerMatches(150, Number.NaN)).toBe(false);
    expect(sliderAnswerMatches(150, Number.POSITIVE_INFINITY)).toBe(false);
    expect(sliderAnswerMatches(150, 150, Number.POSITIVE_INFINITY)).toBe(false);
  });
});
