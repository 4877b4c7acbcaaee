/**
 * The attack a reviewer ran on the slider: the piece PNG carried the background's exact pixels and
 * the gap exactly half of them, so scanning the piece's row for bg = round(piece × 0.5) found every
 * gap (60 of 60), from the response bytes alone. Both scans below (the exact one, and the reviewer's
 * tolerant one, the least summed difference) must still find a gap drawn the old way (the control:
 * the scans work), and now land no more often on the gap than on its decoy. @see captcha review, finding 2
 */
import { PNG } from "pngjs";
import { describe, expect, it } from "vitest";
import { createSliderChallenge, type SliderChallenge, sliderAnswerMatches } from "./slider-challenge.js";

const CHALLENGES = 60;
const OLD_DARKEN_FACTOR = 0.5;

type Scan = (background: PNG, piece: PNG) => number;

function decode(base64: string): PNG {
  return PNG.sync.read(Buffer.from(base64, "base64"));
}

/** The piece's opaque pixels: where it is drawn, and its colour there. */
function opaquePixels(piece: PNG): Array<{ u: number; v: number; rgb: [number, number, number] }> {
  const pixels: Array<{ u: number; v: number; rgb: [number, number, number] }> = [];
  for (let v = 0; v < piece.height; v += 1) {
    for (let u = 0; u < piece.width; u += 1) {
      const index = (v * piece.width + u) * 4;
      if (piece.data[index + 3] !== 255) continue;
      pixels.push({ u, v, rgb: [piece.data[index]!, piece.data[index + 1]!, piece.data[index + 2]!] });
    }
  }
  return pixels;
}

/** The x whose score is best (highest when `higherIsBetter`), trying every place the piece fits. */
function bestX(background: PNG, piece: PNG, score: (x: number) => number, higherIsBetter: boolean): number {
  let best = 0;
  let bestScore = higherIsBetter ? Number.NEGATIVE_INFINITY : Number.POSITIVE_INFINITY;
  for (let x = 0; x + piece.width <= background.width; x += 1) {
    const candidate = score(x);
    if (higherIsBetter ? candidate > bestScore : candidate < bestScore) [best, bestScore] = [x, candidate];
  }
  return best;
}

/** Counts the piece's pixels whose every channel is exactly half the background's there. */
const exactScan: Scan = (background, piece) => {
  const pixels = opaquePixels(piece);
  return bestX(
    background,
    piece,
    (x) =>
      pixels.filter(({ u, v, rgb }) =>
        rgb.every(
          (value, channel) =>
            background.data[(v * background.width + x + u) * 4 + channel] ===
            Math.round(value * OLD_DARKEN_FACTOR),
        ),
      ).length,
    true,
  );
};

/** Sums how far each channel is from half the piece's: the reviewer's solver. */
const tolerantScan: Scan = (background, piece) => {
  const pixels = opaquePixels(piece);
  return bestX(
    background,
    piece,
    (x) => {
      let difference = 0;
      for (const { u, v, rgb } of pixels) {
        for (let channel = 0; channel < 3; channel += 1) {
          const shaded = background.data[(v * background.width + x + u) * 4 + channel]!;
          difference += Math.abs(shaded - Math.round(rgb[channel]! * OLD_DARKEN_FACTOR));
        }
      }
      return difference;
    },
    false,
  );
};

/** Redraws the gap the old way: the piece's own pixels, halved, in place of what the gap shows. */
function withOldGap(challenge: SliderChallenge, background: PNG, piece: PNG): PNG {
  for (const { u, v, rgb } of opaquePixels(piece)) {
    for (let channel = 0; channel < 3; channel += 1) {
      background.data[(v * background.width + challenge.x + u) * 4 + channel] = Math.round(
        rgb[channel]! * OLD_DARKEN_FACTOR,
      );
    }
  }
  return background;
}

describe.each([
  ["the exact scan", exactScan],
  ["the tolerant scan", tolerantScan],
])("slider against %s", (_, scan) => {
  it("control: finds a gap drawn the old way", () => {
    let found = 0;
    for (let run = 0; run < CHALLENGES / 6; run += 1) {
      const challenge = createSliderChallenge();
      const piece = decode(challenge.piecePngBase64);
      const background = withOldGap(challenge, decode(challenge.backgroundPngBase64), piece);
      if (sliderAnswerMatches(challenge.x, scan(background, piece))) found += 1;
    }
    expect(found).toBe(CHALLENGES / 6);
  });

  it("lands on the decoy about as often as on the gap, and finds the answer at most by that coin toss", () => {
    let onGap = 0;
    let onDecoy = 0;
    for (let run = 0; run < CHALLENGES; run += 1) {
      const challenge = createSliderChallenge();
      const x = scan(decode(challenge.backgroundPngBase64), decode(challenge.piecePngBase64));
      if (sliderAnswerMatches(challenge.x, x)) onGap += 1;
      else if (sliderAnswerMatches(challenge.decoyX!, x)) onDecoy += 1;
    }
    // Typically: the exact scan finds the gap 0 to 5 times in 60, the tolerant one 24 to 38 times
    // (and the decoy about as often); before, both found it 60 times.
    expect(onGap).toBeLessThanOrEqual(CHALLENGES * 0.75);
    if (onGap > CHALLENGES * 0.2) expect(onDecoy).toBeGreaterThanOrEqual(CHALLENGES * 0.2);
  });
});
