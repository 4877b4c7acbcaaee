import type { Redis } from "ioredis";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { backendMissing, deleteRedisPrefix, probeRedis, uniqueName } from "../../../test/cluster/backends.js";
import { OtpError } from "../../core/errors.js";
import type { VerificationStore } from "../../core/ports.js";
import type { OutboxMessage } from "../../core/types.js";
import { baseTime, codeRecord, counter, issueRequest, slotRef } from "../contract/fixtures.contract.js";
import { connectRedis } from "../redis/redis-client.js";
import { createRedisCounterStore } from "../redis/redis-counter-store.js";
import { RedisKeys } from "../redis/redis-keys.js";
import {
  createRedisVerificationStore,
  IDEMPOTENCY_PENDING_TTL_MS,
} from "../redis/redis-verification-store.js";
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
    // How the next commits end: as PostgreSQL refusing them (surely not committed), or as a
    // connection lost after the statement was sent (the outcome unknown).
    let commitFails: "refused" | "unknown" | false;
    // A commit the test holds open, to look at the seam while it is under way.
    let commitHeld: Promise<void> | undefined;
    let store: VerificationStore;
    beforeAll(async () => {
      redis = await connectRedis({ url, logger: silent });
      committed = [];
      commitFails = false;
      store = createClusterVerificationStore({
        hot: createRedisVerificationStore(redis, keys),
        // A stand-in for PostgreSQL whose commit the test can make fail, the way pg fails.
        outbox: {
          async enqueue(message) {
            await commitHeld;
            if (commitFails === "refused") {
              throw new pg.DatabaseError("canceling statement due to statement timeout", 0, "error");
            }
            if (commitFails === "unknown") throw new Error("Connection terminated unexpectedly");
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

      commitFails = "refused";
      const failed = codeRecord("app2", now);
      const error = await rejection(store.issue(issueRequest(failed, rules, { idempotency }), now));
      commitFails = false;
      expect(error).toBeInstanceOf(OtpError);
      expect(error).toMatchObject({ code: "STORE_UNAVAILABLE" });

      expect(await store.get("app2", failed.id)).toBeNull();
      expect((await counters.peek("app2", "r:60", now)).count).toBe(0);
      expect((await counters.peek("app2", "r:600", now)).count).toBe(1);
      // The code the failed send superseded, already delivered, is the slot's pending code again
      // (the slot's, not the withdrawn one's: a check by recipient finds it).
      expect((await store.get("app2", earlier.id))?.status).toBe("pending");
      expect(
        await store.consumeAttempt(
          slotRef("app2", "email", earlier.to, "sign_in"),
          { limit: 20, windowSeconds: 60 },
          now,
        ),
      ).toMatchObject({ kind: "counted", record: { id: earlier.id } });

      // The retry of the failed request is a new send, not a replay of a code nobody received.
      const retry = codeRecord("app2", now);
      expect(await store.issue(issueRequest(retry, rules, { idempotency }), now)).toMatchObject({
        kind: "issued",
      });
      expect((await store.get("app2", retry.id))?.status).toBe("pending");
    });

    it("keeps the code and its counters when the commit's outcome is unknown", async () => {
      const now = baseTime();
      const counters = createRedisCounterStore(redis, keys);
      const rules = [counter("r:60", 1, 60)];
      const idempotency = { key: "k", fingerprint: "d".repeat(64) };
      commitFails = "unknown";
      const unsure = codeRecord("app3", now);
      const error = await rejection(store.issue(issueRequest(unsure, rules, { idempotency }), now));
      commitFails = false;
      expect(error).toMatchObject({ code: "STORE_UNAVAILABLE" });
      // The row may be queued: its code stays valid and its send counted, so a message that did
      // go out carries a working code and the limits saw it.
      expect((await store.get("app3", unsure.id))?.status).toBe("pending");
      expect((await counters.peek("app3", "r:60", now)).count).toBe(1);
      // A retry is not told the send went through, as nobody knows: its key is not confirmed.
      const retry = codeRecord("app3", now);
      expect(await store.issue(issueRequest(retry, rules, { idempotency }), now)).toEqual({
        kind: "in_progress",
      });
    });

    it("replays an Idempotency-Key's send only once its outbox row is committed", async () => {
      const now = baseTime();
      const idempotency = { key: "k", fingerprint: "e".repeat(64) };
      let release = () => {};
      commitHeld = new Promise<void>((resolve) => {
        release = resolve;
      });
      const first = codeRecord("app4", now);
      const issuing = store.issue(issueRequest(first, [], { idempotency }), now);
      // The retry arrives while the first commit is under way: no 2xx for a row not yet queued.
      await new Promise((resolve) => setTimeout(resolve, 50));
      const early = store.issue(issueRequest(codeRecord("app4", now), [], { idempotency }), now);
      expect(await early).toEqual({ kind: "in_progress" });
      commitHeld = undefined;
      release();
      expect(await issuing).toEqual({ kind: "issued", resendAfterSeconds: 0, shadowed: [] });
      expect(
        await store.issue(issueRequest(codeRecord("app4", now), [], { idempotency }), now),
      ).toMatchObject({
        kind: "replayed",
        record: { id: first.id },
      });
    });

    it("lets an unconfirmed key lapse, so a send that died leaves it usable", async () => {
      const now = baseTime();
      const idempotency = { key: "k", fingerprint: "f".repeat(64) };
      commitFails = "unknown";
      await rejection(store.issue(issueRequest(codeRecord("app5", now), [], { idempotency }), now));
      commitFails = false;
      const entry = keys.idempotency("app5", "k");
      expect(await redis.pttl(entry)).toBeGreaterThan(0);
      expect(await redis.pttl(entry)).toBeLessThanOrEqual(IDEMPOTENCY_PENDING_TTL_MS);
      await redis.del(entry); // as when it lapses
      const retry = codeRecord("app5", now);
      expect(await store.issue(issueRequest(retry, [], { idempotency }), now)).toMatchObject({
        kind: "issued",
      });
    });
  });
}
