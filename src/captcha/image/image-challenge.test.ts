import { GifReader } from "omggif";
import { describe, expect, it } from "vitest";
import { createImageChallenge, IMAGE_ANSWER_ALPHABET, normalizeImageAnswer } from "./image-challenge.js";

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
  const colours = new Set<number>();
  for (let offset = 0; offset < rgba.length; offset += 4) {
    colours.add((rgba[offset]! << 16) | (rgba[offset + 1]! << 8) | rgba[offset + 2]!);
  }
  return { bytes, width: reader.width, height: reader.height, isInk, colours };
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

const gifOf = (length = 4) => decodeGif(createImageChallenge({ length }).imageDataUri);

describe("createImageChallenge", () => {
  it("draws a 4-character upper-case answer from the unambiguous alphabet by default", () => {
    const { answer } = createImageChallenge();
    expect(answer).toMatch(/^[A-Z2-9]{4}$/);
    for (const character of answer) expect(IMAGE_ANSWER_ALPHABET).toContain(character);
  });

  it("never uses characters people confuse (0, O, 1, I, l)", () => {
    expect(IMAGE_ANSWER_ALPHABET).not.toMatch(/[0O1Il]/);
    const seen = new Set(
      Array.from({ length: 200 }, () => createImageChallenge({ length: 6 }).answer)
        .join("")
        .split(""),
    );
    for (const ambiguous of ["0", "O", "1", "I", "l"]) expect(seen.has(ambiguous)).toBe(false);
  });

  it("honours lengths 4 to 6 and refuses others", () => {
    expect(createImageChallenge({ length: 5 }).answer).toHaveLength(5);
    expect(createImageChallenge({ length: 6 }).answer).toHaveLength(6);
    for (const length of [3, 7, 4.5, Number.NaN]) {
      expect(() => createImageChallenge({ length })).toThrow(RangeError);
    }
  });

  it("hands out pixels only: a GIF, never the SVG whose paths give the answer away", () => {
    const { answer, imageDataUri } = createImageChallenge();
    const { bytes } = decodeGif(imageDataUri);
    expect(bytes.subarray(0, 6).toString("latin1")).toBe("GIF89a");
    const text = bytes.toString("latin1");
    for (const giveaway of ["<svg", "<path", answer]) expect(text).not.toContain(giveaway);
  });

  it.each([
    [4, 150],
    [5, 180],
    [6, 210],
  ])("draws %i characters as a %i×50 image", (length, width) => {
    expect(gifOf(length)).toMatchObject({ width, height: 50 });
  });

  it("draws glyphs and noise in one dark ink on white, across the middle of the image", () => {
    for (const length of [4, 5, 6]) {
      const { width, isInk, colours } = gifOf(length);
      expect(colours.size, `length ${length}`).toBe(2);
      expect(colours.has(0xffffff)).toBe(true);
      const whole = { left: 0, right: width, top: 0, bottom: 50 };
      expect(inkShare(isInk, whole), "some ink").toBeGreaterThan(0.05);
      expect(inkShare(isInk, whole), "mostly background").toBeLessThan(0.4);
      expect(inkShare(isInk, { ...whole, top: 10, bottom: 40 })).toBeGreaterThan(inkShare(isInk, whole));
    }
  });

  it("draws a different picture each time", () => {
    expect(gifOf().bytes.equals(gifOf().bytes)).toBe(false);
  });

  it("draws a different answer each time", () => {
    const answers = new Set(Array.from({ length: 20 }, () => createImageChallenge().answer));
    expect(answers.size).toBeGreaterThan(15);
  });
});

describe("normalizeImageAnswer", () => {
  it("makes answers case-insensitive and ignores surrounding spaces", () => {
    const { answer } = createImageChallenge();
    expect(normalizeImageAnswer(answer.toLowerCase())).toBe(answer);
    expect(normalizeImageAnswer(`  ${answer.toLowerCase()}\n`)).toBe(answer);
    expect(normalizeImageAnswer(" ab3k ")).toBe("AB3K");
  });

  it("still tells different answers apart", () => {
    expect(normalizeImageAnswer("AB3K")).not.toBe(normalizeImageAnswer("AB3X"));
  });
});
