import { describe, expect, it } from "vitest";
import {
  AJ_CAPTCHA_POINT_Y,
  createSecretKey,
  encryptPoint,
  MAX_POINT_JSON_CHARS,
  parsePointJson,
} from "./aj-captcha-point.js";

/** AJ-Captcha's widgets fall back to this key when the server sends none. */
const AJ_DEFAULT_KEY = "XwKsGlMcdPMEhR1B";

describe("createSecretKey", () => {
  it("makes 16 alphanumeric characters, different every time", () => {
    const keys = new Set(Array.from({ length: 50 }, () => createSecretKey()));
    expect(keys.size).toBe(50);
    for (const key of keys) expect(key).toMatch(/^[A-Za-z0-9]{16}$/);
  });
});

describe("encryptPoint", () => {
  it("matches the widget's CryptoJS AES-128-ECB/PKCS7 output (vectors from openssl enc)", () => {
    expect(encryptPoint({ x: 120, y: 5 }, AJ_DEFAULT_KEY)).toBe("o9xC8oniEuMVGnvf78FMzw==");
    expect(encryptPoint({ x: 120.45161290322581, y: 5 }, AJ_DEFAULT_KEY)).toBe(
      "l2Kp8XL709FQuJDVFcgXOy69k5Po8MShs/WWsy/cxGo=",
    );
  });

  it("refuses a key that is not 16 bytes", () => {
    expect(() => encryptPoint({ x: 1, y: 5 }, "short")).toThrow(RangeError);
  });
});

describe("parsePointJson", () => {
  it("round-trips an encrypted point, fractional x included", () => {
    const key = createSecretKey();
    const point = { x: 187.3548387096774, y: AJ_CAPTCHA_POINT_Y };
    expect(parsePointJson(encryptPoint(point, key), key)).toEqual(point);
  });

  it("decrypts what the widget sends for AJ-Captcha's default key", () => {
    expect(parsePointJson("o9xC8oniEuMVGnvf78FMzw==", AJ_DEFAULT_KEY)).toEqual({ x: 120, y: 5 });
  });

  it("accepts plain JSON with or without a key, ignoring extra fields", () => {
    expect(parsePointJson('{"x":120,"y":5}', null)).toEqual({ x: 120, y: 5 });
    expect(parsePointJson(' {"x":120.5,"y":5,"z":"extra"} ', createSecretKey())).toEqual({ x: 120.5, y: 5 });
  });

  it("repairs '+' turned into ' ' by form or query decoding, a leading one too", () => {
    // (a trailing one cannot happen: base64 of a padded AES block ends in '=')
    const key = createSecretKey();
    let x = 100;
    while (!encryptPoint({ x, y: 5 }, key).startsWith("+")) x += 1;
    const mangled = encryptPoint({ x, y: 5 }, key).replaceAll("+", " ");
    expect(parsePointJson(mangled, key)).toEqual({ x, y: 5 });
  });

  it("returns null for the wrong key or no key", () => {
    const ciphertext = encryptPoint({ x: 120, y: 5 }, createSecretKey());
    expect(parsePointJson(ciphertext, createSecretKey())).toBeNull();
    expect(parsePointJson(ciphertext, null)).toBeNull();
    expect(parsePointJson(ciphertext, "not-16-bytes")).toBeNull();
  });

  it("returns null for malformed points", () => {
    const malformed = [
      "",
      "   ",
      "{",
      "null",
      "[120,5]",
      '{"x":120}',
      '{"y":5}',
      '{"x":"120","y":5}',
      '{"x":null,"y":5}',
      '{"x":true,"y":5}',
      '{"x":-1,"y":5}',
      '{"x":120,"y":-5}',
      '{"x":1e309,"y":5}',
      '{"x":100000,"y":5}',
      '{"x":120,"y":5000}',
    ];
    for (const input of malformed) expect(parsePointJson(input, null)).toBeNull();
  });

  it("returns null for NaN and infinite coordinates sent encrypted", () => {
    const key = createSecretKey();
    expect(parsePointJson(encryptPoint({ x: Number.NaN, y: 5 }, key), key)).toBeNull();
    expect(parsePointJson(encryptPoint({ x: Number.POSITIVE_INFINITY, y: 5 }, key), key)).toBeNull();
  });

  it("returns null for absurd sizes without parsing them", () => {
    const padded = `{"x":120,"y":5${" ".repeat(MAX_POINT_JSON_CHARS)}}`;
    expect(parsePointJson(padded, null)).toBeNull();
    expect(parsePointJson("A".repeat(10 * 1024 * 1024), createSecretKey())).toBeNull();
  });

  it("returns null for broken ciphertexts", () => {
    const key = createSecretKey();
    const valid = encryptPoint({ x: 120, y: 5 }, key);
    for (const input of [
      "not base64!",
      valid.slice(0, -4),
      `${valid}AAAA`,
      "AAAAAAAAAAAAAAAAAAAAAA==",
      Buffer.alloc(32, 7).toString("base64"),
      "====",
    ]) {
      expect(parsePointJson(input, key)).toBeNull();
    }
  });

  it("never throws, whatever it is given", () => {
    const key = createSecretKey();
    const alphabet = '{}[]":,.-+/=eE0123456789xyABCD \\\u0000\u00ff\ud800';
    for (let run = 0; run < 2_000; run += 1) {
      let input = "";
      const length = Math.floor(Math.random() * 40);
      for (let index = 0; index < length; index += 1) {
        input += alphabet[Math.floor(Math.random() * alphabet.length)];
      }
      expect(() => parsePointJson(input, run % 2 === 0 ? key : null)).not.toThrow();
    }
    expect(parsePointJson(undefined as unknown as string, key)).toBeNull();
  });
});
