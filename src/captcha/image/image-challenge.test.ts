import { describe, expect, it } from "vitest";
import { createImageChallenge, IMAGE_ANSWER_ALPHABET, normalizeImageAnswer } from "./image-challenge.js";

function svgOf(imageDataUri: string): string {
  const prefix = "data:image/svg+xml;base64,";
  expect(imageDataUri.startsWith(prefix)).toBe(true);
  return Buffer.from(imageDataUri.slice(prefix.length), "base64").toString("utf8");
}

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

  it("renders an SVG data URI whose source does not contain the answer as text", () => {
    const { answer, imageDataUri } = createImageChallenge();
    const svg = svgOf(imageDataUri);
    expect(svg.startsWith("<svg")).toBe(true);
    expect(svg).toContain("<path");
    expect(svg).not.toContain("<text");
    expect(svg).not.toContain(answer);
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
