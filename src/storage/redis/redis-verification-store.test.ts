import { randomBytes } from "node:crypto";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { backendMissing, deleteRedisPrefix, probeRedis, uniqueName } from "../../../test/cluster/backends.js";
import { failedChecksKey, slotKey } from "../../core/verification/keys.js";
import { baseTime, codeRecord, counter, issueRequest, tokenFor } from "../contract/fixtures.contract.js";
import { connectRedis } from "./redis-client.js";
import { decodeCode, encodeCode } from "./redis-code-codec.js";
import { RedisKeys } from "./redis-keys.js";
import { createRedisVerificationStore, type RedisVerificationStore } from "./redis-verification-store.js";

// Issue goal: at most 200 bytes of Redis memory per live code. The code key alone meets it; its
// slot pointer (recipient + purpose -> newest code) adds ~120-136 bytes more, printed by the test
// below and reported in bench/RESULTS.md: the whole is not yet within the goal.
const CODE_BYTES_GOAL = 200;
const silent = { debug() {}, info() {}, warn() {}, error() {} };

describe("redis code codec", () => {
  it("packs and unpacks every field, whatever the recipient and account id hold", () => {
    const now = baseTime();
    for (const fields of [
      {},
      { to: "zoë|ü:1@bücher.example", accountId: "a|b:c" },
      {
        channel: "sms" as const,
        to: "+8613812345678",
        tokenPurposes: ["sign_in" as const, "sign_up" as const],
      },
      {
        status: "superseded" as const,
        attempts: 12,
        maxAttempts: 20,
        createdAtMs: now - 1,
        expiresAtMs: now + 1,
      },
    ]) {
      const record = codeRecord("app", now, fields);
      expect(decodeCode("app", record.id, encodeCode(record))).toEqual(record);
    }
  });
});

const redisProbe = await probeRedis();
if (!redisProbe.ok) {
  backendMissing("redis verification store", redisProbe.reason);
} else {
  const url = redisProbe.url;
  describe("redis verification store", () => {
    const prefix = `${uniqueName("redis")}:`;
    const keys = new RedisKeys(prefix);
    let redis: Redis;
    let store: RedisVerificationStore;
    let commands = 0;
    beforeAll(async () => {
      redis = await connectRedis({ url, logger: silent });
      // Observe the driver: every command (script or plain) the store sends is one round trip.
      const send = redis.sendCommand.bind(redis);
      redis.sendCommand = (...args: Parameters<typeof send>) => {
        commands += 1;
        return send(...args);
      };
      store = createRedisVerificationStore(redis, keys);
    });
    afterAll(async () => {
      redis.disconnect();
      await deleteRedisPrefix(url, prefix);
    });

    const roundTrips = async (operation: () => Promise<unknown>): Promise<number> => {
      const before = commands;
      await operation();
      return commands - before;
    };

    it("does each operation in one round trip", async () => {
      const now = baseTime();
      const record = codeRecord("app1", now);
      const request = issueRequest(
        record,
        [counter("r:60", 1, 60), counter("r:600", 5, 600), counter("ip:1", 10, 3600)],
        {
          idempotency: { key: "k1", fingerprint: "a".repeat(64) },
        },
      );
      const failureKey = failedChecksKey("email", record.to);
      const budget = { limit: 20, windowSeconds: 86_400 };
      const token = tokenFor(record, now);
      const trips = {
        issue: await roundTrips(() => store.issue(request, now)),
        consumeById: await roundTrips(() =>
          store.consumeAttempt({ appId: "app1", id: record.id }, budget, now),
        ),
        consumeBySlot: await roundTrips(() =>
          store.consumeAttempt(
            { appId: "app1", slotKey: slotKey("email", record.to, "sign_in") },
            budget,
            now,
          ),
        ),
        approve: await roundTrips(() => store.approve("app1", record.id, token, failureKey, now)),
        get: await roundTrips(() => store.get("app1", record.id)),
        findToken: await roundTrips(() => store.findToken("app1", token.tokenHash, now)),
        consumeToken: await roundTrips(() => store.consumeToken("app1", token.tokenHash, now)),
        cancel: await roundTrips(() => store.cancel("app1", record.id, now)),
        refundFailure: await roundTrips(() => store.refundFailure("app1", failureKey, now)),
        withdraw: await roundTrips(() => store.withdraw(request, now)),
      };
      expect(Object.values(trips)).toEqual(Object.values(trips).map(() => 1));
    });

    it("bounds every key it writes with a TTL", async () => {
      const now = baseTime();
      const record = codeRecord("app2", now);
      await store.issue(
        issueRequest(record, [counter("r:60", 1, 60)], {
          idempotency: { key: "k2", fingerprint: "b".repeat(64) },
        }),
        now,
      );
      await store.consumeAttempt({ appId: "app2", id: record.id }, { limit: 20, windowSeconds: 86_400 }, now);
      await store.approve("app2", record.id, tokenFor(record, now), failedChecksKey("email", record.to), now);
      const written = await redis.keys(`${prefix}{app2}:*`);
      expect(written.length).toBeGreaterThanOrEqual(6);
      for (const key of written)
        expect({ key, ttl: await redis.pttl(key) }).toMatchObject({ ttl: expect.any(Number) });
      expect((await Promise.all(written.map((key) => redis.pttl(key)))).every((ttl) => ttl > 0)).toBe(true);
    });

    it(`keeps a code's own key within ${CODE_BYTES_GOAL} bytes and reports its slot pointer beside it`, async () => {
      // Measured with production-shaped keys (default prefix, app "default", a 20-character email,
      // a Chinese mobile number), under random recipients so parallel runs cannot collide; the
      // keys are deleted afterwards.
      const production = new RedisKeys("vd:");
      const live = createRedisVerificationStore(redis, production);
      const now = baseTime();
      const random = randomBytes(4).toString("hex");
      const sizes: Record<string, number> = {};
      const written: string[] = [];
      for (const [channel, to] of [
        ["email", `${random}@example.com`],
        ["sms", `+86138${Number.parseInt(random, 16).toString().padStart(10, "0").slice(-8)}`],
      ] as const) {
        const record = codeRecord("default", now, { channel, to });
        await live.issue(issueRequest(record), now);
        const codeKey = production.code("default", record.id);
        const slot = production.slot("default", slotKey(channel, to, "sign_in"));
        written.push(codeKey, slot);
        sizes[`${channel} code`] = Number(await redis.call("MEMORY", "USAGE", codeKey));
        sizes[`${channel} slot pointer`] = Number(await redis.call("MEMORY", "USAGE", slot));
      }
      await redis.del(...written);
      console.info(`redis memory per live code (bytes, MEMORY USAGE): ${JSON.stringify(sizes)}`);
      expect(sizes["email code"]).toBeLessThanOrEqual(CODE_BYTES_GOAL);
      expect(sizes["sms code"]).toBeLessThanOrEqual(CODE_BYTES_GOAL);
    });
  });
}
