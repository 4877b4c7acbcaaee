import type { Redis } from "ioredis";
import type { CounterState, CounterStore } from "../../core/ports.js";
import type { RedisKeys } from "./redis-keys.js";
import { replyArray, replyNumber } from "./redis-replies.js";
import { withScripts } from "./redis-scripts.js";

/**
 * Windowed counters in Redis, in the same keys `issue` counts (as SQLite shares one table), so a
 * rule outside the send can read a send counter. `hit` is one Lua script: read, restart an
 * elapsed window or add one, write with the window's TTL (fastify-rate-limit's INCR+PEXPIRE, with
 * the window's end stored so the caller's clock decides, like the SQLite store).
 */
export function createRedisCounterStore(client: Redis, keys: RedisKeys): CounterStore {
  const redis = withScripts(client);
  return {
    async hit(appId, key, windowSeconds, nowMs) {
      const [count, resetAtMs] = replyArray(
        await redis.vdHit(1, keys.counter(appId, key), nowMs, windowSeconds * 1000),
      ).map(replyNumber) as [number, number];
      return { count, resetAtMs };
    },
    async peek(appId, key, nowMs): Promise<CounterState> {
      const value = await redis.get(keys.counter(appId, key));
      const [count, resetAtMs] = (value ?? "0:0").split(":").map(Number) as [number, number];
      return resetAtMs > nowMs ? { count, resetAtMs } : { count: 0, resetAtMs: 0 };
    },
    async refund(appId, key, resetAtMs) {
      await redis.vdRefund(1, keys.counter(appId, key), resetAtMs);
    },
    async reset(appId, key) {
      await redis.del(keys.counter(appId, key));
    },
  };
}
