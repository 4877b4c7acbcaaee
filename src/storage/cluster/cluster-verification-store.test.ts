import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { backendMissing, deleteRedisPrefix, probeRedis, uniqueName } from "../../../test/cluster/backends.js";
import { OtpError } from "../../core/errors.js";
import type { VerificationStore } from "../../core/ports.js";
import type { OutboxMessage } from "../../core/types.js";
import { baseTime, codeRecord, counter, issueRequest, slotRef } from "../contract/fixtures.contract.js";
import { connectRedis } from "../redis/redis-client.js";
import { createRedisCounterStore } from "../redis/redis-counter-store.js";
import { RedisKeys } from "../redis/redis-keys.js";
import { createRedisVerificationStore } from "../redis/redis-verification-store.js";
import { failClosed } from "../store-unavailable.js";
import { createClusterVerificationStore } from "./cluster-verification-store.js";

const silent = { debug() {}, info() {}, warn() {}, error() {} };

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error("expected a rejection");
}

describe("failClosed", () => {
  it("turns any backend failure into STORE_UNAVAILABLE and lets core errors through", async () => {
    const port = failClosed("test", {
      down: async () => {
        throw new Error("ECONNREFUSED 127.0.0.1:6379");
      },
      throwsNow: (): number => {
        throw new Error("socket closed");
      },
      rule: async () => {
        throw new OtpError("ACCOUNT_EXISTS");
      },
      fine: async (value: number) => value + 1,
    });
    const down = await rejection(port.down());
    expect(down).toBeInstanceOf(OtpError);
    expect(down).toMatchObject({ code: "STORE_UNAVAILABLE", internal: "test: ECONNREFUSED 127.0.0.1:6379" });
    expect(() => port.throwsNow()).toThrow(expect.objectContaining({ code: "STORE_UNAVAILABLE" }));
    expect(await rejection(port.rule())).toMatchObject({ code: "ACCOUNT_EXISTS" });
    expect(await port.fine(1)).toBe(2);
  });
});

const redisProbe = await probeRedis();
if (!redisProbe.ok) {
  backendMissing("cluster verification store (the seam)", redisProbe.reason);
} else {
  const url = redisProbe.url;
  describe("cluster verification store (the seam)", () => {
    const prefix = `${uniqueName("redis")}:`;
    const keys = new RedisKeys(prefix);
    let redis: Redis;
    let committed: OutboxMessage[];
    let commitFails: boolean;
    let store: VerificationStore;
    beforeAll(async () => {
      redis = await connectRedis({ url, logger: silent });
      committed = [];
      commitFails = false;
      store = createClusterVerificationStore({
        hot: createRedisVerificationStore(redis, keys),
        // A stand-in for PostgreSQL whose commit the test can make fail.
        outbox: {
          async enqueue(message) {
            if (commitFails) throw new Error("connection terminated unexpectedly");
            committed.push(message);
          },
          drain: async () => {},
        },
        deliveries: async () => [],
        logger: silent,
      });
    });
    afterAll(async () => {
      redis.disconnect();
      await deleteRedisPrefix(url, prefix);
    });

    it("resolves an issue only after its outbox row is committed", async () => {
      const now = baseTime();
      const request = issueRequest(codeRecord("app1", now));
      expect(await store.issue(request, now)).toMatchObject({ kind: "issued" });
      expect(committed.map((message) => message.id)).toContain(request.outbox?.id);
    });

    it("withdraws the code, refunds its counters and forgets its idempotency key when the commit fails", async () => {
      const now = baseTime();
      const counters = createRedisCounterStore(redis, keys);
      const rules = [
        counter("r:60", 1, 60),
        counter("r:600", 5, 600),
        counter("flag", 5, 600, { increment: 0 }),
      ];
      const idempotency = { key: "k", fingerprint: "c".repeat(64) };
      const earlier = codeRecord("app2", now - 120_000);
      await store.issue(issueRequest(earlier, rules), now - 120_000);

      commitFails = true;
      const failed = codeRecord("app2", now);
      const error = await rejection(store.issue(issueRequest(failed, rules, { idempotency }), now));
      commitFails = false;
      expect(error).toBeInstanceOf(OtpError);
      expect(error).toMatchObject({ code: "STORE_UNAVAILABLE" });

      expect(await store.get("app2", failed.id)).toBeNull();
      expect((await counters.peek("app2", "r:60", now)).count).toBe(0);
      expect((await counters.peek("app2", "r:600", now)).count).toBe(1);
      expect(
        await store.consumeAttempt(
          slotRef("app2", "email", failed.to, "sign_in"),
          { limit: 20, windowSeconds: 60 },
          now,
        ),
      ).toEqual({ kind: "not_found" });
      // Restoring the superseded code is not needed: the caller got a 503 and sends again.
      expect((await store.get("app2", earlier.id))?.status).toBe("superseded");

      // The retry of the failed request is a new send, not a replay of a code nobody received.
      const retry = codeRecord("app2", now);
      expect(await store.issue(issueRequest(retry, rules, { idempotency }), now)).toMatchObject({
        kind: "issued",
      });
      expect((await store.get("app2", retry.id))?.status).toBe("pending");
    });
  });
}
