import { createHash, randomBytes } from "node:crypto";

/**
 * Ids and tokens carry 128 random bits (DESIGN.md: unguessable by third parties), base64url, with
 * a short prefix so a leaked value says what it is. Minting one costs a few hundred nanoseconds.
 */
export function newId(prefix: string): string {
  return `${prefix}_${randomBytes(16).toString("base64url")}`;
}

/** A bearer secret (verification token, session, API key): 192 random bits. */
export function newSecretToken(prefix: string): string {
  return `${prefix}_${randomBytes(24).toString("base64url")}`;
}

/** Bearer secrets are stored only as their SHA-256; they are random, so no salt or HMAC is needed. */
export function sha256Hex(value: string): string {
  return createHash("sha256").update(value).digest("hex");
}
