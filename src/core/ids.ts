import { createHash, randomFillSync } from "node:crypto";

// Random bytes are drawn from the CSPRNG in 16 KiB batches and handed out once each: one call
// into OpenSSL per few hundred ids instead of one per id (it showed at ~10% of a send's CPU).
const POOL_BYTES = 16 * 1024;
const pool = Buffer.allocUnsafe(POOL_BYTES);
let poolOffset = POOL_BYTES;

/** `size` fresh CSPRNG bytes (a copy: the pool's bytes are never handed out twice). */
export function randomBytesFromPool(size: number): Buffer {
  if (size > POOL_BYTES) return randomFillSync(Buffer.allocUnsafe(size));
  if (poolOffset + size > POOL_BYTES) {
    randomFillSync(pool);
    poolOffset = 0;
  }
  const bytes = Buffer.from(pool.subarray(poolOffset, poolOffset + size));
  // Consumed bytes are zeroed so nothing else can ever read them from the pool.
  pool.fill(0, poolOffset, poolOffset + size);
  poolOffset += size;
  return bytes;
}

/**
 * Ids and tokens carry 128 random bits (DESIGN.md: unguessable by third parties), base64url, with
 * a short prefix so a leaked value says what it is. Minting one costs a few hundred nanoseconds.
 */
export function newId(prefix: string): string {
  return `${prefix}_${randomBytesFromPool(16).toString("base64url")}`;
}

/** A bearer secret (verification token, session, API key): 192 random bits. */
export function newSecretToken(prefix: string): string {
  return `${prefix}_${randomBytesFromPool(24).toString("base64url")}`;
}

/** Bearer secrets are stored only as their SHA-256; they are random, so no salt or HMAC is needed. */
export function sha256Hex(value: string): string {
  return createHash("sha256").update(value).digest("hex");
}
