/**
 * Key layout of the Redis hot state. Every key of one app starts with `<prefix>{<appId>}:`, so all
 * keys one operation touches share the `{appId}` hash tag and live in one Redis Cluster slot (the
 * Lua scripts also derive keys from that tag: a superseded code from its slot pointer, the failure
 * counter from a code's recipient).
 *
 *   c:<verification id>   the code (packed, see redis-code-codec.ts); TTL: expiry + grace
 *   s:<slot key>          id of the slot's newest code; same TTL as that code
 *   n:<counter key>       windowed counter "count:resetAtMs"; TTL: its window
 *   t:<token hash>        verification token; TTL: its validity
 *   i:<idempotency key>   "expiresAtMs:resendAfterSeconds:id:fingerprint"; TTL: 24 h
 *   p:<pass token hash>   captcha pass token; TTL: its validity
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

  code(appId: string, id: string): string {
    return `${this.app(appId)}c:${id}`;
  }

  slot(appId: string, slotKey: string): string {
    return `${this.app(appId)}s:${slotKey}`;
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
