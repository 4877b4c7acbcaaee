import { hash, randomFillSync } from "node:crypto";

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
/** Characters of the time part every time-ordered id starts with (9 base36 digits of ms). */
export const ID_TIME_CHARS = TIME_PART_CHARS;
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
/** Bytes of an id's stamp (`parseVerificationId`): its time characters, then its random bytes. */
export const VERIFICATION_STAMP_BYTES = ID_TIME_CHARS + VERIFICATION_RANDOM_BYTES;
const VERIFICATION_ID = new RegExp(
  `^${VERIFICATION_ID_PREFIX}([0-9a-z]{${ID_TIME_CHARS}})([\\w-]{${SLOT_TAG_CHARS}})([\\w-]{${VERIFICATION_RANDOM_CHARS}})$`,
);

/**
 * A verification id: `vf_<time><slot tag><random>`.
 * - The time (`newTimeOrderedId`'s) comes first so that stores indexing ids (SQLite, PostgreSQL)
 *   insert each at the right edge of the index, not on a random page.
 * - The slot tag (`CodeSecrets.slotTags`) names the code's (app, recipient, purpose) slot under a
 *   keyed hash, so a store that keeps a slot's code under the slot (Redis: one key per live code)
 *   finds it by id too.
 * - The 144 random bits keep the id unguessable even to whoever knows the tag (an earlier id of
 *   the same slot shows it) and the time.
 */
export function newVerificationId(slotTag: string, nowMs: number): string {
  return `${VERIFICATION_ID_PREFIX}${timePart(nowMs)}${slotTag}${randomBytesFromPool(VERIFICATION_RANDOM_BYTES).toString("base64url")}`;
}

/** The id whose tag and stamp these are (the inverse of `parseVerificationId`). */
export function formatVerificationId(slotTag: string, stamp: Buffer): string {
  const time = stamp.toString("latin1", 0, ID_TIME_CHARS);
  return `${VERIFICATION_ID_PREFIX}${time}${slotTag}${stamp.toString("base64url", ID_TIME_CHARS)}`;
}

/**
 * The parts of a verification id, or null when it is not shaped like one (it cannot exist): its
 * slot tag, and its stamp (everything else: the time characters, then the raw random bytes), which
 * tells it from every other id of its slot.
 */
export function parseVerificationId(id: string): { slotTag: string; stamp: Buffer } | null {
  const parts = VERIFICATION_ID.exec(id);
  if (!parts) return null;
  // Whole groups of 4 base64url characters: every such id maps to one random value and back.
  const stamp = Buffer.allocUnsafe(VERIFICATION_STAMP_BYTES);
  stamp.write(parts[1] ?? "", 0, "latin1");
  stamp.write(parts[3] ?? "", ID_TIME_CHARS, "base64url");
  return { slotTag: parts[2] ?? "", stamp };
}

/** A bearer secret (verification token, session, API key): 192 random bits. */
export function newSecretToken(prefix: string): string {
  return `${prefix}_${randomBytesFromPool(24).toString("base64url")}`;
}

// 192 random bits in base64url
const SECRET_CHARS = 32;

/**
 * A bearer secret that sorts by a time: `<prefix>_<time><192 random bits>`, for secrets minted on
 * a hot path (verification tokens, one per approved check, timed by their expiry). Stores key it
 * by `timeOrderedSecretKey`, so a day's inserts share index pages instead of each taking a random
 * one, and the keys of secrets timed before a moment sort before `timeOrderedKeyBound` of it.
 */
export function newTimeOrderedSecret(prefix: string, timeMs: number): string {
  return `${prefix}_${timePart(timeMs)}${randomBytesFromPool(24).toString("base64url")}`;
}

/** Every `timeOrderedSecretKey` of a secret timed before `timeMs` sorts before this string. */
export function timeOrderedKeyBound(timeMs: number): string {
  return timePart(timeMs);
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
  // One-shot: no Hash object, whose handle each garbage collection would have to visit.
  return hash("sha256", value, "hex");
}
