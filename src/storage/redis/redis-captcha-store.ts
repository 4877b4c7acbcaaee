import type { Redis } from "ioredis";
import type { CaptchaKind, CaptchaStore, StoredChallenge } from "../../core/ports.js";
import type { RedisKeys } from "./redis-keys.js";
import { replyArray, replyNumber, replyText } from "./redis-replies.js";
import { withScripts } from "./redis-scripts.js";

/**
 * Captcha challenges (a small hash per challenge: a app, k kind, h answer hash, c client key,
 * t tries left, x expiry, d dev answer) and pass tokens ("expiresAtMs|boundTo") in Redis, each
 * with a TTL of its validity. Every operation is one round trip; single use holds because taking
 * a try is one script and consuming is DEL / GETDEL, which exactly one caller wins.
 */
export function createRedisCaptchaStore(client: Redis, keys: RedisKeys): CaptchaStore {
  const redis = withScripts(client);
  return {
    async saveChallenge(challenge) {
      const key = keys.captchaChallenge(challenge.token);
      const fields: Record<string, string | number> = {
        a: challenge.appId,
        k: challenge.kind,
        h: challenge.answerHash,
        t: challenge.triesLeft,
        x: challenge.expiresAtMs,
        ...(challenge.clientKey === undefined ? {} : { c: challenge.clientKey }),
        ...(challenge.devAnswer === undefined ? {} : { d: challenge.devAnswer }),
      };
      // MULTI/EXEC is written in one go: one round trip, and the hash never exists without a TTL.
      await redis.multi().hset(key, fields).pexpire(key, wallTtlMs(challenge.expiresAtMs)).exec();
    },
    async takeTry(appId, token, nowMs) {
      const reply = await redis.vdTakeTry(1, keys.captchaChallenge(token), nowMs, appId);
      return reply ? toChallenge(token, pairs(replyArray(reply))) : null;
    },
    async consumeChallenge(appId, token) {
      return replyNumber(await redis.vdConsumeChallenge(1, keys.captchaChallenge(token), appId)) === 1;
    },
    async peekChallenge(token, nowMs) {
      const fields = await redis.hgetall(keys.captchaChallenge(token));
      if (!fields.a) return null;
      const challenge = toChallenge(token, fields);
      return challenge.expiresAtMs > nowMs ? challenge : null;
    },
    async savePass(pass) {
      await redis.set(
        keys.captchaPass(pass.appId, pass.tokenHash),
        `${pass.expiresAtMs}|${pass.boundTo ?? ""}`,
        "PX",
        wallTtlMs(pass.expiresAtMs),
      );
    },
    async consumePass(appId, tokenHash, nowMs) {
      // GETDEL: of concurrent redeemers exactly one gets the pass.
      const value = await redis.getdel(keys.captchaPass(appId, tokenHash));
      if (value === null) return null;
      const separator = value.indexOf("|");
      const expiresAtMs = Number(value.slice(0, separator));
      const boundTo = value.slice(separator + 1);
      if (expiresAtMs <= nowMs) return null;
      return { tokenHash, appId, expiresAtMs, ...(boundTo ? { boundTo } : {}) };
    },
  };
}

// These port methods get no `now`, so the TTL (a memory bound only: validity is checked against the
// caller's clock) comes from the wall clock. A caller whose clock is behind the wall clock (tests
// with a fixed clock) would get an already lapsed TTL; such records get this bound instead.
const FALLBACK_TTL_MS = 3600 * 1000;

function wallTtlMs(expiresAtMs: number): number {
  const left = expiresAtMs - Date.now();
  return left > 0 ? Math.ceil(left) : FALLBACK_TTL_MS;
}

function pairs(flat: unknown[]): Record<string, string> {
  const fields: Record<string, string> = {};
  for (let index = 0; index + 1 < flat.length; index += 2) {
    fields[replyText(flat[index])] = replyText(flat[index + 1]);
  }
  return fields;
}

function toChallenge(token: string, fields: Record<string, string>): StoredChallenge {
  return {
    token,
    appId: fields.a ?? "",
    kind: fields.k as CaptchaKind,
    answerHash: fields.h ?? "",
    ...(fields.c === undefined ? {} : { clientKey: fields.c }),
    triesLeft: Number(fields.t),
    expiresAtMs: Number(fields.x),
    ...(fields.d === undefined ? {} : { devAnswer: fields.d }),
  };
}
