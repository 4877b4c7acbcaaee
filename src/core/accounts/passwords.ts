import { randomBytes, scrypt, timingSafeEqual } from "node:crypto";
import { promisify } from "node:util";

const scryptAsync = promisify(scrypt) as (
  password: string,
  salt: Buffer,
  keylen: number,
  options: object,
) => Promise<Buffer>;

// N=2^15, r=8, p=1: a third of the work OWASP asks of scrypt (2^15 with p=3, or 2^17 with p=1).
// Each hash takes 50-100 ms of one of libuv's four threads here, which logins share with DNS
// lookups and file I/O: at p=3 a burst of logins on a small machine held up the rest for ~3x as
// long. The lockout (5 tries an hour) bounds online guessing; each hash records its parameters,
// so they can be raised without invalidating old ones.
const SCRYPT_PARAMS = { N: 32_768, r: 8, p: 1, maxmem: 64 * 1024 * 1024 };
const KEY_LENGTH = 32;

/** `scrypt$N$r$p$salt$hash` (base64url), so parameters can be raised later without breaking old hashes. */
export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const key = await scryptAsync(password.normalize("NFKC"), salt, KEY_LENGTH, SCRYPT_PARAMS);
  const { N, r, p } = SCRYPT_PARAMS;
  return `scrypt$${N}$${r}$${p}$${salt.toString("base64url")}$${key.toString("base64url")}`;
}

export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const [scheme, n, r, p, salt, hash] = stored.split("$");
  if (scheme !== "scrypt" || !salt || !hash) return false;
  const expected = Buffer.from(hash, "base64url");
  const key = await scryptAsync(password.normalize("NFKC"), Buffer.from(salt, "base64url"), expected.length, {
    N: Number(n),
    r: Number(r),
    p: Number(p),
    maxmem: SCRYPT_PARAMS.maxmem,
  });
  return timingSafeEqual(key, expected);
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
