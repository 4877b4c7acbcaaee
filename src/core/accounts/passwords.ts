import { randomBytes, scrypt, timingSafeEqual } from "node:crypto";
import { promisify } from "node:util";
import { OtpError } from "../errors.js";
import { createSemaphore } from "./semaphore.js";

const scryptAsync = promisify(scrypt) as (
  password: string,
  salt: Buffer,
  keylen: number,
  options: object,
) => Promise<Buffer>;

/**
 * The longest password any face lets a person set, in UTF-16 units (JavaScript's `length`, which
 * counts a character outside the BMP, an emoji, as two). Every face that checks a password (a
 * sign-in, a sudo, a re-verification) accepts one this long, since an account signs in on every
 * face with the password any face set (Fresns sets up to this). A JSON schema's `maxLength`
 * counts code points, never more than UTF-16 units, so a schema capped at it accepts every such
 * password. A face may set shorter ones only (its vendor's limit: CloudBase 64, IDaaS 128).
 */
export const MAX_PASSWORD_CHARACTERS = 256;

// N=2^15, r=8, p=1: a third of the work OWASP asks of scrypt (2^15 with p=3, or 2^17 with p=1).
// Each hash takes 50-100 ms of one of libuv's four threads here, which logins share with DNS
// lookups and file I/O: at p=3 a burst of logins on a small machine held up the rest for ~3x as
// long. The lockout (5 tries an hour) bounds online guessing; each hash records its parameters,
// so they can be raised without invalidating old ones.
const SCRYPT_PARAMS = { N: 32_768, r: 8, p: 1, maxmem: 64 * 1024 * 1024 };
const KEY_LENGTH = 32;

// scrypt runs on libuv's thread pool (four threads by default), which DNS look-ups (SMTP's, the
// vendors') and file I/O share: with every thread on hashes, a flood of logins held a real user's
// login up for seconds and the mail queue with it. So no more than two hashes run at once, in
// this process, and the rest wait in line. A comparison (a login, anyone's to send) is refused
// rather than queued past a short line, so that a flood is answered at once instead of piling
// up; a new password's hash waits, as its proof (a code, a token) may be spent already. One whose
// proof is not spent by it (a session's, CloudBase's behind a sudo token it may use again) can be
// sent again instead, so it is refused too, and at half the line: changes alone, however many
// accounts send them, never fill the line, so never get a login refused.
const HASH_SLOTS = 2;
const MAX_WAITING_COMPARISONS = 32;
const MAX_WAITING_RETRYABLE_HASHES = MAX_WAITING_COMPARISONS / 2;
const hashSlots = createSemaphore(HASH_SLOTS);

const hashesBusy = () =>
  new OtpError("RATE_LIMITED", { details: { retryAfterSeconds: 1, rule: "password_hashes_busy" } });

/** `scrypt$N$r$p$salt$hash` (base64url), so parameters can be raised later without breaking old hashes. */
export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const key = await hashSlots.run(() =>
    scryptAsync(password.normalize("NFKC"), salt, KEY_LENGTH, SCRYPT_PARAMS),
  );
  const { N, r, p } = SCRYPT_PARAMS;
  return `scrypt$${N}$${r}$${p}$${salt.toString("base64url")}$${key.toString("base64url")}`;
}

/**
 * `hashPassword` for a new password whose proof it does not spend (a session's change), which the
 * caller can send again: RATE_LIMITED (retry in a second) when half the line of hashes waits
 * already, instead of a place at its end.
 */
export async function hashRetryablePassword(password: string): Promise<string> {
  if (hashSlots.waiting >= MAX_WAITING_RETRYABLE_HASHES) throw hashesBusy();
  return hashPassword(password);
}

/**
 * Whether `password` matches `stored`. A stored hash this build cannot read as one it would accept
 * matches nothing: a hash field decoding to no bytes made scrypt derive an empty key, equal to the
 * empty expected one, so any password passed; an N that is not a power of two, or parameters past
 * the memory bound, made scrypt throw and the login answer 500. RATE_LIMITED (retry in a second)
 * when too many hashes wait already.
 */
export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const parsed = parseStoredHash(stored);
  if (!parsed) return false;
  const { salt, expected, ...params } = parsed;
  if (hashSlots.waiting >= MAX_WAITING_COMPARISONS) throw hashesBusy();
  return hashSlots.run(async () => {
    try {
      const key = await scryptAsync(password.normalize("NFKC"), salt, expected.length, {
        ...params,
        maxmem: SCRYPT_PARAMS.maxmem,
      });
      return timingSafeEqual(key, expected);
    } catch {
      return false;
    }
  });
}

/**
 * Whether a stored hash that matched a password is weaker than the ones this build makes (less
 * work, N·r·p, for a guess, or a shorter key), so that a login should store a new one: an import's
 * N=2^10, an older build's. A stronger one is kept. A hash this build cannot read needs none: it
 * matches nothing, so no login reaches this.
 */
export function needsRehash(stored: string): boolean {
  const parsed = parseStoredHash(stored);
  if (!parsed) return false;
  const { N, r, p } = SCRYPT_PARAMS;
  return parsed.N * parsed.r * parsed.p < N * r * p || parsed.expected.length < KEY_LENGTH;
}

// What a stored hash may hold: this build's parameters, or others within what scrypt can run here
// (a hash imported, or written by a build with other settings). Below 2^10 it would be no hash.
const MIN_N = 1_024;
const MIN_SALT_BYTES = 8;
const MIN_KEY_BYTES = 16;
const MAX_KEY_BYTES = 64;
const WHOLE_NUMBER = /^[1-9]\d{0,9}$/;

function parseStoredHash(stored: string) {
  const [scheme, n, r, p, salt, hash, ...rest] = stored.split("$");
  if (scheme !== "scrypt" || rest.length > 0) return null;
  if (![n, r, p].every((value) => value !== undefined && WHOLE_NUMBER.test(value))) return null;
  const [N, blockSize, parallel] = [Number(n), Number(r), Number(p)];
  // scrypt needs a power of two, and 128 * r * (N + 2 + p) bytes, the bound OpenSSL checks
  // against maxmem (a tighter bound refused imported hashes scrypt runs, N=2^15 with r=12)
  if (N < MIN_N || (N & (N - 1)) !== 0 || blockSize > 32 || parallel > 16) return null;
  if (128 * blockSize * (N + 2 + parallel) > SCRYPT_PARAMS.maxmem) return null;
  const saltBytes = Buffer.from(salt ?? "", "base64url");
  const expected = Buffer.from(hash ?? "", "base64url");
  if (saltBytes.length < MIN_SALT_BYTES || expected.length < MIN_KEY_BYTES || expected.length > MAX_KEY_BYTES)
    return null;
  return { N, r: blockSize, p: parallel, salt: saltBytes, expected };
}

// A hash no password is known to match, made once, on first use.
let decoyHash: Promise<string> | undefined;

/**
 * Compares `password` with a decoy hash: for a login that has no hash to compare with (no such
 * account, or one without a password), so that its answer takes the time a wrong password's does.
 */
export async function decoyCompare(password: string): Promise<void> {
  decoyHash ??= hashPassword(randomBytes(16).toString("base64url"));
  await verifyPassword(password, await decoyHash);
}
