/**
 * Key layout of the Redis hot state. Every key of one app starts with `<prefix>{<appId>}:`, so all
 * keys one operation touches share the `{appId}` hash tag and live in one Redis Cluster slot (the
 * Lua scripts also derive keys from that tag: a displaced code's from its id, the failure counter
 * from a code's recipient).
 *
 *   s:<slot tag>          the slot's newest code (packed, see redis-code-codec.ts); TTL: expiry + grace
 *   c:<verification id>   a code a newer one of its slot displaced (superseded, or approved/canceled
 *                         before); TTL: what its slot key had left
 *   n:<counter key>       windowed counter "count:resetAtMs"; TTL: its window
 *   t:<token hash>        verification token; TTL: its validity
 *   i:<idempotency key>   "expiresAtMs:resendAfterSeconds:id:fingerprint"; TTL: 24 h; while the
 *                         send's outbox row is not yet committed, expiresAtMs is 0 and TTL 30 s
 *   f:<idempotency key>   the code as that send issued it (packed): its answer once the code's own
 *                         key is gone; TTL: 24 h
 *   d:<verification id>   the id of the pending code this code's issue superseded, so a withdraw
 *                         can give that one the slot back without the reply; TTL: 60 s
 *   p:<pass token hash>   captcha pass token; TTL: its validity
 *
 * A live code is one key (issue #8: <= 200 bytes per live code): it lives under its slot, named by
 * the slot's tag (a keyed hash of app + recipient + purpose, `CodeSecrets.slotTags`), and its
 * verification id `vf_<slot tag><random>` carries that tag, so a lookup by id reads `s:<tag>` and
 * takes the code there if its stored random part matches the id's, else `c:<id>`. A new code for
 * the slot moves the one it displaces to `c:<its id>` (superseded if it was pending), so only
 * codes that are no longer live cost a second key. After a secret rotation the slot also has tags
 * under the older secrets: codes issued before it stay under those, where `issue` supersedes and
 * a check by recipient finds them; so do codes a build before the slot key folded an address's
 * ASCII case filed under the address as typed (`SlotAddress.formerSlotKey`). Two slots sharing a tag (odds about 2^-72 per pair) would only
 * supersede each other's codes: a check by recipient also compares the code's recipient and purpose.
 *
 * Captcha challenges are looked up by token alone (the dev API has no app), and every challenge
 * operation touches that one key, so they live outside the app tag: `<prefix>cc:<token>`.
 */
export class RedisKeys {
  constructor(readonly prefix: string) {}

  /** `<prefix>{<appId>}:`, the hash-tagged root of one app's keys */
  app(appId: string): string {
    return `${this.prefix}{${appId}}:`;
  }

  /** the key of a code a newer one of its slot displaced */
  code(appId: string, id: string): string {
    return `${this.app(appId)}c:${id}`;
  }

  /** the key of the slot's newest code: its tag under one secret (`CodeSecrets.slotTags`) */
  slot(appId: string, slotTag: string): string {
    return `${this.app(appId)}s:${slotTag}`;
  }

  counter(appId: string, key: string): string {
    return `${this.app(appId)}n:${key}`;
  }

  token(appId: string, tokenHash: string): string {
    return `${this.app(appId)}t:${tokenHash}`;
  }

  idempotency(appId: string, key: string): string {
    return `${this.app(appId)}i:${key}`;
  }

  captchaPass(appId: string, tokenHash: string): string {
    return `${this.app(appId)}p:${tokenHash}`;
  }

  captchaChallenge(token: string): string {
    return `${this.prefix}cc:${token}`;
  }
}

/** Milliseconds until `atMs`, at least 1: Redis refuses a zero or negative PX. */
export function ttlMs(atMs: number, nowMs: number): number {
  return Math.max(1, Math.ceil(atMs - nowMs));
}
