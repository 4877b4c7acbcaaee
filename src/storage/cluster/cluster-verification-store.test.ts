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
import { createClusterVerificationStore, SETTLE_HOLD_MS } from "./cluster-verification-store.js";

const silent = { debug() {}, info() {}, warn() {}, error() {} };

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error("expected a rejection");
}

// What `next` returns once `done` holds of it (or, past 5 s, whatever it returned last).
async function eventually<T>(next: () => Promise<T>, done: (value: T) => boolean): Promise<T> {
  const deadline = Date.now() + 5_000;
  for (;;) {
    const value = await next();
    if (done(value) || Date.now() > deadline) return value;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
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
    // What happens while the next commit is under way.
    let duringCommit: (() => Promise<unknown>) | undefined;
    // Whether the rows of unknown commits fail to be written again (PostgreSQL still away).
    let requeueFails: boolean;
    // How many of the next confirms Redis does not answer.
    let confirmsLost: number;
    let store: VerificationStore;
    beforeAll(async () => {
      redis = await connectRedis({ url, logger: silent });
      committed = [];
      commitFails = false;
      requeueFails = false;
      confirmsLost = 0;
      const hot = createRedisVerificationStore(redis, keys);
      store = createClusterVerificationStore({
        hot: {
          ...hot,
          async confirm(request, nowMs, resendAfterSeconds) {
            if (confirmsLost > 0) {
              confirmsLost -= 1;
              throw new Error("Command timed out");
            }
            return hot.confirm(request, nowMs, resendAfterSeconds);
          },
        },
        // A stand-in for PostgreSQL whose commit the test can make fail, the way pg fails.
        outbox: {
          async enqueue(message) {
            await commitHeld;
            await duringCommit?.();
            if (commitFails === "refused") {
              throw new pg.DatabaseError("canceling statement due to statement timeout", 0, "error");
            }
            // (as a connection lost before the statement went out: nothing committed)
            if (commitFails === "unknown") throw new Error("Connection terminated unexpectedly");
            committed.push(message);
          },
          async requeue(message) {
            if (requeueFails) throw new Error("connect ECONNREFUSED 127.0.0.1:5432");
            if (!committed.some((row) => row.id === message.id)) committed.push(message);
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
      // It says when to try again, as every refusal does.
      expect(error).toMatchObject({ code: "STORE_UNAVAILABLE", details: { retryAfterSeconds: 1 } });

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

    // Regression: the key's pending entry lapsed unconfirmed 30 s on, and a retry under it then
    // sent a second code superseding the first one's message. @see .scratch/idem/t4.mjs
    it("keeps the code and its counters when the commit's outcome is unknown, and replays its key once its row is queued", async () => {
      const now = baseTime();
      const counters = createRedisCounterStore(redis, keys);
      const rules = [counter("r:60", 1, 60)];
      const idempotency = { key: "k", fingerprint: "d".repeat(64) };
      commitFails = "unknown";
      requeueFails = true;
      const unsure = codeRecord("app3", now);
      const error = await rejection(store.issue(issueRequest(unsure, rules, { idempotency }), now));
      commitFails = false;
      expect(error).toMatchObject({ code: "STORE_UNAVAILABLE", details: { retryAfterSeconds: 1 } });
      // The row may be queued: its code stays valid and its send counted, so a message that did
      // go out carries a working code and the limits saw it.
      expect((await store.get("app3", unsure.id))?.status).toBe("pending");
      expect((await counters.peek("app3", "r:60", now)).count).toBe(1);
      // A retry is not told the send went through while nobody knows, nor sent a second code.
      const retry = () => store.issue(issueRequest(codeRecord("app3", now), rules, { idempotency }), now);
      expect(await retry()).toEqual({ kind: "in_progress", fingerprint: idempotency.fingerprint });
      // The key stays pending while the row is being settled, past the life of a pending entry.
      const entry = keys.idempotency("app3", "k");
      expect(await redis.pttl(entry)).toBeGreaterThan(IDEMPOTENCY_PENDING_TTL_MS);
      expect(await redis.pttl(entry)).toBeLessThanOrEqual(SETTLE_HOLD_MS);

      // PostgreSQL answers again: the row is written (once), and the key replays the first send.
      requeueFails = false;
      expect(await eventually(retry, (outcome) => outcome.kind !== "in_progress")).toMatchObject({
        kind: "replayed",
        record: { id: unsure.id },
      });
      expect(committed.filter((message) => message.verificationId === unsure.id)).toHaveLength(1);
      expect((await counters.peek("app3", "r:60", now)).count).toBe(1);
    });

    it("replays a key whose commit outlasted its pending entry", async () => {
      const now = baseTime();
      const idempotency = { key: "k", fingerprint: "a".repeat(64) };
      const entry = keys.idempotency("app6", "k");
      // A batch stalled behind PostgreSQL's commits for longer than the entry waits.
      duringCommit = () => redis.del(entry);
      const first = codeRecord("app6", now);
      const issued = await store.issue(issueRequest(first, [], { idempotency }), now);
      duringCommit = undefined;
      expect(issued).toMatchObject({ kind: "issued" });
      // The caller got a 2xx: its key replays that answer, not a second code.
      expect(
        await store.issue(issueRequest(codeRecord("app6", now), [], { idempotency }), now),
      ).toMatchObject({ kind: "replayed", record: { id: first.id } });
      expect(await redis.pttl(entry)).toBeGreaterThan(IDEMPOTENCY_PENDING_TTL_MS);
    });

    it("confirms a key in the background when Redis did not answer its first confirm", async () => {
      const now = baseTime();
      const idempotency = { key: "k", fingerprint: "b".repeat(64) };
      confirmsLost = 2;
      const first = codeRecord("app7", now);
      expect(await store.issue(issueRequest(first, [], { idempotency }), now)).toMatchObject({
        kind: "issued",
      });
      const retry = () => store.issue(issueRequest(codeRecord("app7", now), [], { idempotency }), now);
      expect(await eventually(retry, (outcome) => outcome.kind !== "in_progress")).toMatchObject({
        kind: "replayed",
        record: { id: first.id },
      });
      expect(confirmsLost).toBe(0);
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
      expect(await early).toEqual({ kind: "in_progress", fingerprint: idempotency.fingerprint });
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

    it("lets the key of a send it could not settle lapse, so it is usable again", async () => {
      const now = baseTime();
      const idempotency = { key: "k", fingerprint: "f".repeat(64) };
      commitFails = "unknown";
      requeueFails = true;
      await rejection(store.issue(issueRequest(codeRecord("app5", now), [], { idempotency }), now));
      commitFails = false;
      const entry = keys.idempotency("app5", "k");
      expect(await redis.pttl(entry)).toBeGreaterThan(0);
      expect(await redis.pttl(entry)).toBeLessThanOrEqual(SETTLE_HOLD_MS);
      await redis.del(entry); // as when it lapses
      const retry = codeRecord("app5", now);
      expect(await store.issue(issueRequest(retry, [], { idempotency }), now)).toMatchObject({
        kind: "issued",
      });
      // The settling that goes on never takes the key back from the send that has it now.
      requeueFails = false;
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      expect(
        await store.issue(issueRequest(codeRecord("app5", now), [], { idempotency }), now),
      ).toMatchObject({ kind: "replayed", record: { id: retry.id } });
    });
  });
}
