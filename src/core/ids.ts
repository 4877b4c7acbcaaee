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

// Milliseconds since the epoch in 9 base36 digits (enough until the year 5188): a fixed width
// keeps text order and time order the same.
const TIME_PART_CHARS = 9;
function timePart(nowMs: number): string {
  return nowMs.toString(36).padStart(TIME_PART_CHARS, "0");
}

/**
 * An id that sorts by the time it was minted: `<prefix>_<ms since epoch, 9 base36 digits><128
 * random bits>`. Ids a store indexes in insertion order (outbox messages, and the dev inbox and
 * delivery rows keyed by them) then land at the right edge of the index, so a group commit writes
 * a few shared index pages instead of one random page per id. The time it shows is the send's,
 * which its caller knows anyway; the random part keeps it unguessable.
 */
export function newTimeOrderedId(prefix: string, nowMs: number): string {
  return `${prefix}_${timePart(nowMs)}${randomBytesFromPool(16).toString("base64url")}`;
}

export const VERIFICATION_ID_PREFIX = "vf_";
/** Bytes of a verification id's slot tag: 72 bits, 12 base64url characters (see `newVerificationId`). */
export const SLOT_TAG_BYTES = 9;
/**
 * Random bytes of a verification id after its slot tag: 144 bits, 24 base64url characters. The tag
 * is not secret from whoever saw an earlier id of the slot, so the random part alone must meet
 * DESIGN.md's ">= 128 bits" (144 is the next multiple of 3 bytes, which base64url needs unpadded).
 */
export const VERIFICATION_RANDOM_BYTES = 18;
// base64url: 4 characters per 3 bytes; both lengths are multiples of 3, so there is no padding.
export const SLOT_TAG_CHARS = (SLOT_TAG_BYTES / 3) * 4;
export const VERIFICATION_RANDOM_CHARS = (VERIFICATION_RANDOM_BYTES / 3) * 4;
const VERIFICATION_ID = new RegExp(
  `^${VERIFICATION_ID_PREFIX}([\\w-]{${SLOT_TAG_CHARS}})([\\w-]{${VERIFICATION_RANDOM_CHARS}})$`,
);

/**
 * A verification id: `vf_<slot tag><random>`. The slot tag (`CodeSecrets.slotTags`) names the
 * code's (app, recipient, purpose) slot under a keyed hash, so a store that keeps a slot's code
 * under the slot (Redis: one key per live code) finds it by id too; the 144 random bits after it
 * keep the id unguessable even to whoever knows the tag (an earlier id of the same slot shows it).
 * Stores that index ids directly (SQLite, PostgreSQL) ignore the structure.
 */
export function newVerificationId(slotTag: string): string {
  return formatVerificationId(slotTag, randomBytesFromPool(VERIFICATION_RANDOM_BYTES));
}

/** The id `newVerificationId` would mint for this tag and these random bytes. */
export function formatVerificationId(slotTag: string, random: Buffer): string {
  return `${VERIFICATION_ID_PREFIX}${slotTag}${random.toString("base64url")}`;
}

/** The parts of a verification id, or null when it is not shaped like one (it cannot exist). */
export function parseVerificationId(id: string): { slotTag: string; random: Buffer } | null {
  const parts = VERIFICATION_ID.exec(id);
  if (!parts) return null;
  // Whole groups of 4 base64url characters: every such id maps to one random value and back.
  return { slotTag: parts[1] ?? "", random: Buffer.from(parts[2] ?? "", "base64url") };
}

/** A bearer secret (verification token, session, API key): 192 random bits. */
export function newSecretToken(prefix: string): string {
  return `${prefix}_${randomBytesFromPool(24).toString("base64url")}`;
}

// 192 random bits in base64url
const SECRET_CHARS = 32;

/**
 * A bearer secret that sorts by the time it was minted: `<prefix>_<time><192 random bits>`, for
 * secrets minted on a hot path (verification tokens, one per approved check). Stores key it by
 * `timeOrderedSecretKey`, so a day's inserts share index pages instead of each taking a random one.
 */
export function newTimeOrderedSecret(prefix: string, nowMs: number): string {
  return `${prefix}_${timePart(nowMs)}${randomBytesFromPool(24).toString("base64url")}`;
}

/**
 * What a store keys a `newTimeOrderedSecret` by: its time part in clear, then the SHA-256 of the
 * whole secret (the time is no secret; the random part never rests in clear). Any other string
 * (a secret minted before this format, a forgery) is keyed by its SHA-256 alone.
 */
export function timeOrderedSecretKey(secret: string): string {
  const start = secret.indexOf("_") + 1;
  const timed = start > 0 && secret.length === start + TIME_PART_CHARS + SECRET_CHARS;
  return timed ? `${secret.slice(start, start + TIME_PART_CHARS)}${sha256Hex(secret)}` : sha256Hex(secret);
}

/** Bearer secrets are stored only as their SHA-256; they are random, so no salt or HMAC is needed. */
export function sha256Hex(value: string): string {
  return createHash("sha256").update(value).digest("hex");
}
