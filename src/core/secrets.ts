import {
  createCipheriv,
  createDecipheriv,
  createHmac,
  hkdfSync,
  randomInt,
  timingSafeEqual,
} from "node:crypto";
import { randomBytesFromPool, SLOT_TAG_CHARS } from "./ids.js";
import type { OutboxMessage } from "./types.js";

/**
 * Whether two strings are equal, in a time that tells nothing of where they differ (only whether
 * their byte lengths do): for signatures, tags and keyed hashes a caller presents.
 */
export function equalInConstantTime(a: string, b: string): boolean {
  const left = Buffer.from(a);
  const right = Buffer.from(b);
  return left.length === right.length && timingSafeEqual(left, right);
}

/**
 * Server secrets, newest first. Codes are hashed under the newest; checks compare against every
 * secret so a rotation does not kill the codes already issued (kratos `hmacValueWithSecret` loop).
 */
export class CodeSecrets {
  private readonly hmacKeys: Buffer[];
  private readonly sealKeys: Buffer[];
  private readonly settingSealKeys: Buffer[];
  private readonly slotTagKeys: Buffer[];

  constructor(secrets: readonly string[]) {
    if (secrets.length === 0) throw new Error("at least one secret is required");
    this.hmacKeys = secrets.map((secret) => deriveKey(secret, "verifyd code hmac"));
    this.sealKeys = secrets.map((secret) => deriveKey(secret, "verifyd outbox seal"));
    this.settingSealKeys = secrets.map((secret) => deriveKey(secret, "verifyd app setting seal"));
    this.slotTagKeys = secrets.map((secret) => deriveKey(secret, "verifyd slot tag"));
  }

  /**
   * The tag of an (app, slot) under every secret, newest first: the first goes into the slot's
   * verification ids (`newVerificationId`); a store keyed by tag looks under all of them, so a code
   * issued before a rotation is still found and superseded after it. Keyed, never a plain hash:
   * ids are handed to clients, and a plain hash of a phone number is brute-forced in seconds.
   * 72 bits: two live slots of one app share a tag with odds of about 2^-72 per pair.
   */
  slotTags(appId: string, slotKey: string): string[] {
    // The digest's first SLOT_TAG_BYTES in base64url are its text's first SLOT_TAG_CHARS
    // characters (a multiple of 3 bytes encodes without carrying into the next character).
    return this.slotTagKeys.map((key) => hmacText(key, appId, slotKey, "base64url").slice(0, SLOT_TAG_CHARS));
  }

  /** HMAC-SHA256 of the code, bound to its verification id so equal codes never share a hash. */
  hashCode(verificationId: string, code: string): string {
    return hmacText(this.hmacKeys[0]!, verificationId, code, "hex");
  }

  /** Constant-time comparison against the stored hash (hex text) under every secret. */
  codeMatches(verificationId: string, code: string, storedHashHex: string): boolean {
    // The hex texts themselves are compared: small Buffers made from strings come from Node's
    // shared pool, where a digest's Buffer would be an allocation of its own (see `hmacText`).
    const stored = Buffer.from(storedHashHex, "latin1");
    let matched = false;
    // Every key is tried even after a match so the time taken does not depend on which key matched.
    for (const key of this.hmacKeys) {
      const candidate = Buffer.from(hmacText(key, verificationId, code, "hex"), "latin1");
      if (candidate.length === stored.length && timingSafeEqual(candidate, stored)) matched = true;
    }
    return matched;
  }

  /**
   * AES-256-GCM seal of an outbox payload (the code must travel to the worker, never in plaintext),
   * bound to `context` (`outboxSealContext`): it opens only beside the same row, so whoever can
   * write the database but not read the secret cannot send a queued code to another recipient.
   */
  seal(plaintext: string, context: string): string {
    return `${BOUND_SEAL_PREFIX}${sealWith(this.sealKeys[0]!, plaintext, context)}`;
  }

  /** Opens a sealed payload under any configured secret and its context; null when none opens it. */
  open(sealed: string, context: string): string | null {
    const opened = sealed.startsWith(BOUND_SEAL_PREFIX)
      ? openWith(this.sealKeys, sealed.slice(BOUND_SEAL_PREFIX.length), context)
      : // sealed by a build before contexts: a row queued across the upgrade, delivered as it was
        openWith(this.sealKeys, sealed);
    return opened?.plaintext ?? null;
  }

  /** AES-256-GCM seal of an app's secret setting (its Fresns secret, say), under its own key. */
  sealSetting(plaintext: string): string {
    return sealWith(this.settingSealKeys[0]!, plaintext);
  }

  /**
   * Opens a sealed setting under any configured secret: `newest` is false when an older secret
   * opened it (it should be sealed anew before that secret is dropped); null when none opens it.
   */
  openSetting(sealed: string): { plaintext: string; newest: boolean } | null {
    const opened = openWith(this.settingSealKeys, sealed);
    return opened && { plaintext: opened.plaintext, newest: opened.keyIndex === 0 };
  }

  /** A key for other keyed hashes (captcha answers, JWT signing) derived from the newest secret. */
  deriveKey(purpose: string): Buffer {
    return hmac(this.hmacKeys[0]!, "derive", purpose);
  }

  /** The key for `purpose` under every secret, newest first (for things verified after rotation). */
  allDerivedKeys(purpose: string): Buffer[] {
    return this.hmacKeys.map((key) => hmac(key, "derive", purpose));
  }

  /** A short public id per secret (not the secret), newest first: JWT `kid`s. */
  get keyIds(): string[] {
    return this.hmacKeys.map((key) => hmac(key, "kid", "").toString("hex").slice(0, 8));
  }
}

// Marks a seal with a context (its associated data); not a base64 character, so a seal without
// one (an older build's) never starts with it.
const BOUND_SEAL_PREFIX = "v2.";

/**
 * What an outbox row's sealed code is bound to: the fields that decide who receives it and what it
 * proves. Moved to another row, or its row's recipient edited, the seal no longer opens.
 */
export function outboxSealContext(
  message: Pick<OutboxMessage, "appId" | "verificationId" | "channel" | "to" | "purpose">,
): string {
  return `${message.appId}\n${message.verificationId}\n${message.channel}\n${message.to}\n${message.purpose}`;
}

/** iv (12 bytes) | GCM tag (16) | ciphertext, in base64; `context`, if any, authenticated with it. */
function sealWith(key: Buffer, plaintext: string, context?: string): string {
  const iv = randomBytesFromPool(12);
  const cipher = createCipheriv("aes-256-gcm", key, iv);
  if (context !== undefined) cipher.setAAD(Buffer.from(context, "utf8"));
  const body = Buffer.concat([cipher.update(plaintext, "utf8"), cipher.final()]);
  return Buffer.concat([iv, cipher.getAuthTag(), body]).toString("base64");
}

function openWith(
  keys: readonly Buffer[],
  sealed: string,
  context?: string,
): { plaintext: string; keyIndex: number } | null {
  const raw = Buffer.from(sealed, "base64");
  if (raw.length < 28) return null;
  const iv = raw.subarray(0, 12);
  const tag = raw.subarray(12, 28);
  const body = raw.subarray(28);
  for (const [keyIndex, key] of keys.entries()) {
    try {
      const decipher = createDecipheriv("aes-256-gcm", key, iv);
      decipher.setAuthTag(tag);
      if (context !== undefined) decipher.setAAD(Buffer.from(context, "utf8"));
      return {
        plaintext: Buffer.concat([decipher.update(body), decipher.final()]).toString("utf8"),
        keyIndex,
      };
    } catch {
      // not sealed under this key; try the next (older) one
    }
  }
  return null;
}

function deriveKey(secret: string, info: string): Buffer {
  return Buffer.from(hkdfSync("sha256", secret, "verifyd", info, 32));
}

function hmac(key: Buffer, id: string, value: string): Buffer {
  // One update of the joined text: the same bytes as three, and each call crosses into C++.
  return createHmac("sha256", key).update(`${id}\0${value}`).digest();
}

/**
 * `hmac` as text. On the request path: a digest as a Buffer is an ArrayBuffer of its own, which
 * every young-generation collection then sweeps (~0.6 ms of a 3 ms scavenge under checks, with
 * the token's hash); as text it is an ordinary string.
 */
function hmacText(key: Buffer, id: string, value: string, encoding: "hex" | "base64url"): string {
  return createHmac("sha256", key).update(`${id}\0${value}`).digest(encoding);
}

/** A CSPRNG numeric code; leading zeros allowed, so every code of the length is equally likely. */
export function generateNumericCode(length: number): string {
  return randomInt(0, 10 ** length)
    .toString()
    .padStart(length, "0");
}
