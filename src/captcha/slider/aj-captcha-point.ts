import { createCipheriv, createDecipheriv, randomInt } from "node:crypto";
import { SLIDER_MAX_DIMENSION_PX } from "./slider-challenge.js";

/**
 * AJ-Captcha's widgets (and its Java server) always answer and expect `y: 5`: the piece image is
 * as tall as the background, so the vertical position carries no information.
 */
export const AJ_CAPTCHA_POINT_Y = 5;

/** Length of the per-challenge `secretKey`: 16 UTF-8 bytes make the AES-128 key the widget derives. */
export const SECRET_KEY_LENGTH = 16;

/** Longest `pointJson` read; a real one is under 100 characters, so anything beyond is garbage or abuse. */
export const MAX_POINT_JSON_CHARS = 2048;

const SECRET_KEY_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const AES_BLOCK_BYTES = 16;
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

/** A slider answer in background pixels; AJ-Captcha widgets send fractional `x` after scaling. */
export interface SliderPoint {
  x: number;
  y: number;
}

/**
 * A fresh `secretKey` for one challenge: 16 alphanumeric characters (about 95 bits) from a CSPRNG,
 * shaped like AJ-Captcha's so its widgets accept it. The server hands it to the browser in the
 * clear, so the encryption it keys is obfuscation against naive replay scripts, not secrecy.
 */
export function createSecretKey(): string {
  let key = "";
  for (let index = 0; index < SECRET_KEY_LENGTH; index += 1) {
    key += SECRET_KEY_ALPHABET[randomInt(SECRET_KEY_ALPHABET.length)];
  }
  return key;
}

/**
 * Encrypts a point exactly as AJ-Captcha's widget `aesEncrypt(JSON.stringify(point), secretKey)`
 * does: CryptoJS AES with the key's UTF-8 bytes, ECB, PKCS#7, base64. For tests and scripted clients.
 *
 * @throws RangeError when `secretKey` is not 16 UTF-8 bytes (the caller's bug, not user input).
 */
export function encryptPoint(point: SliderPoint, secretKey: string): string {
  const key = aesKey(secretKey);
  if (key === null) {
    throw new RangeError(`secretKey must be ${SECRET_KEY_LENGTH} UTF-8 bytes`);
  }
  // ECB is what the widget speaks; it is not a confidentiality choice (the key travels with the challenge).
  const cipher = createCipheriv("aes-128-ecb", key, null);
  const plain = JSON.stringify({ x: point.x, y: point.y });
  return Buffer.concat([cipher.update(plain, "utf8"), cipher.final()]).toString("base64");
}

/**
 * Reads a slider answer as AJ-Captcha clients send it: plain JSON (`{"x":120,"y":5}`) or that JSON
 * AES-encrypted with the challenge's `secretKey` (see {@link encryptPoint}). Plain JSON is always
 * accepted because the encryption adds no security (the key is public to the client), and scripted
 * integrations send it that way.
 *
 * Returns null — never throws — for anything that is not a point: more than
 * {@link MAX_POINT_JSON_CHARS} characters, bad base64 or padding, a wrong key, non-numeric, NaN,
 * negative or beyond {@link SLIDER_MAX_DIMENSION_PX} coordinates. Extra fields are ignored, as
 * AJ-Captcha's server ignores them.
 */
export function parsePointJson(input: string, secretKey: string | null): SliderPoint | null {
  if (typeof input !== "string" || input.length === 0 || input.length > MAX_POINT_JSON_CHARS) {
    return null;
  }
  const trimmed = input.trim();
  if (trimmed.startsWith("{")) {
    return toPoint(parseJson(trimmed));
  }
  if (secretKey === null) {
    return null;
  }
  // Spaces are not trimmed from a ciphertext: one at either end is a '+' that form or query
  // decoding turned into ' ' (see decrypt).
  const plain = decrypt(input.replace(/^[\t\r\n]+|[\t\r\n]+$/g, ""), secretKey);
  return plain === null ? null : toPoint(parseJson(plain));
}

function aesKey(secretKey: string): Buffer | null {
  const key = Buffer.from(secretKey, "utf8");
  return key.length === AES_BLOCK_BYTES ? key : null;
}

function decrypt(ciphertextBase64: string, secretKey: string): string | null {
  const key = aesKey(secretKey);
  if (key === null) {
    return null;
  }
  // A base64 answer carried in a query string or an unescaped form body arrives with '+' turned into
  // ' '; mapping it back can only restore the sender's ciphertext.
  const normalized = ciphertextBase64.replaceAll(" ", "+");
  // Buffer.from(…, "base64") silently skips junk, so check the alphabet first.
  if (normalized.length % 4 !== 0 || !BASE64.test(normalized)) {
    return null;
  }
  const ciphertext = Buffer.from(normalized, "base64");
  if (ciphertext.length === 0 || ciphertext.length % AES_BLOCK_BYTES !== 0) {
    return null;
  }
  try {
    const decipher = createDecipheriv("aes-128-ecb", key, null);
    const plain = Buffer.concat([decipher.update(ciphertext), decipher.final()]);
    // fatal: invalid UTF-8 (a wrong key yields random bytes that may pass the padding check) is refused.
    return new TextDecoder("utf-8", { fatal: true }).decode(plain);
  } catch {
    // Bad padding (almost always a wrong key) or invalid UTF-8.
    return null;
  }
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function toPoint(value: unknown): SliderPoint | null {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return null;
  }
  const { x, y } = value as Record<string, unknown>;
  if (!isCoordinate(x) || !isCoordinate(y)) {
    return null;
  }
  return { x, y };
}

function isCoordinate(value: unknown): value is number {
  return (
    typeof value === "number" && Number.isFinite(value) && value >= 0 && value <= SLIDER_MAX_DIMENSION_PX
  );
}
