import { randomBytes } from "node:crypto";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { backendMissing, deleteRedisPrefix, probeRedis, uniqueName } from "../../../test/cluster/backends.js";
import { parseVerificationId } from "../../core/ids.js";
import { failedChecksKey } from "../../core/verification/keys.js";
import {
  baseTime,
  codeRecord,
  counter,
  issueRequest,
  slotRef,
  tokenFor,
} from "../contract/fixtures.contract.js";
import { connectRedis } from "./redis-client.js";
import { decodeCode, encodeCode } from "./redis-code-codec.js";
import { createRedisCounterStore } from "./redis-counter-store.js";
import { RedisKeys } from "./redis-keys.js";
import {
  CODE_GRACE_MS,
  createRedisVerificationStore,
  type RedisVerificationStore,
} from "./redis-verification-store.js";

// Issue #8: at most 200 bytes of Redis memory per live code, every key it occupies counted.
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
          store.consumeAttempt(slotRef("app1", "email", record.to, "sign_in"), budget, now),
        ),
        approve: await roundTrips(() => store.approve("app1", record.id, token, failureKey, now)),
        get: await roundTrips(() => store.get("app1", record.id)),
        findToken: await roundTrips(() => store.findToken("app1", token.tokenHash, now)),
        consumeToken: await roundTrips(() => store.consumeToken("app1", token.tokenHash, now)),
        cancel: await roundTrips(() => store.cancel("app1", record.id, now)),
        refundAttempt: await roundTrips(() => store.refundAttempt("app1", record.id, failureKey, now)),
        hold: await roundTrips(() => store.hold(request, now, 0, 60_000)),
        confirm: await roundTrips(() => store.confirm(request, now, 0)),
        withdraw: await roundTrips(() => store.withdraw(request, now)),
      };
      expect(Object.values(trips)).toEqual(Object.values(trips).map(() => 1));
    });

    it("reads the idempotency entries of the builds before it: committed ones replay, pending ones wait", async () => {
      const now = baseTime();
      const appId = `app-${randomBytes(4).toString("hex")}`;
      const fingerprint = "ab".repeat(32);
      const first = codeRecord(appId, now);
      await store.issue(issueRequest(first, [], { outbox: false }), now);
      const entry = keys.idempotency(appId, "k");
      const retry = () =>
        store.issue(
          issueRequest(codeRecord(appId, now), [], { idempotency: { key: "k", fingerprint } }),
          now,
        );
      // As a build writes it today (committed) and as a few builds before wrote it with a state.
      for (const committed of [
        `${now + 60_000}:0:${first.id}:${fingerprint}`,
        `${now + 60_000}:0:${first.id}:${fingerprint}:d`,
      ]) {
        await redis.set(entry, committed, "PX", 60_000);
        expect(await retry()).toMatchObject({ kind: "replayed", fingerprint, record: { id: first.id } });
      }
      for (const pending of [
        `0:0:${first.id}:${fingerprint}`,
        `${now + 60_000}:0:${first.id}:${fingerprint}:p`,
      ]) {
        await redis.set(entry, pending, "PX", 60_000);
        expect(await retry()).toEqual({ kind: "in_progress", fingerprint });
      }
    });

    it("replays a keyed send for the key's day, though its code's own key lapsed an hour past expiry", async () => {
      const now = baseTime();
      const appId = `app-${randomBytes(4).toString("hex")}`;
      const idempotency = { key: "day-long", fingerprint: "cd".repeat(32) };
      const first = codeRecord(appId, now);
      await store.issue(issueRequest(first, [], { idempotency }), now);
      // what Redis does an hour past the code's expiry: its keys are gone, the entry is not
      const codeKeys = await redis.keys(`${prefix}{${appId}}:[sc]:*`);
      expect(codeKeys.length).toBeGreaterThan(0);
      await redis.del(...codeKeys);
      const later = now + 2 * 3600 * 1000;
      expect(await store.replay(appId, idempotency.key, later)).toEqual({
        kind: "replayed",
        record: first,
        resendAfterSeconds: 0,
        fingerprint: idempotency.fingerprint,
      });
      expect(
        await store.issue(issueRequest(codeRecord(appId, later), [], { idempotency }), later),
      ).toMatchObject({ kind: "replayed", record: { id: first.id } });
      // a kept code that is not the entry's (an older build reused the key) is no answer
      await redis.set(`${prefix}{${appId}}:f:day-long`, encodeCode(codeRecord(appId, now)), "PX", 60_000);
      expect(await store.replay(appId, idempotency.key, later)).toBeNull();
      // a withdrawn send leaves no answer behind
      const withdrawn = codeRecord(appId, now);
      const keyed = issueRequest(withdrawn, [], { idempotency: { ...idempotency, key: "withdrawn" } });
      await store.issue(keyed, now);
      await store.withdraw(keyed, now);
      expect(await store.replay(appId, "withdrawn", now)).toBeNull();
      expect(await redis.keys(`${prefix}{${appId}}:f:withdrawn`)).toEqual([]);
    });

    // Regression: a commit slower than the pending entry's life (a batch stalled behind others)
    // was answered 201, yet its confirm found no entry and the key sent a second code; so did a
    // confirm retried after Redis came back. @see .scratch/idem/t4.mjs
    it("confirms a keyed send whose pending entry lapsed, for the rest of the key's day", async () => {
      const now = baseTime();
      const appId = `app-${randomBytes(4).toString("hex")}`;
      const idempotency = { key: "slow", fingerprint: "ef".repeat(32) };
      const first = codeRecord(appId, now);
      const request = issueRequest(first, [counter("r:60", 1, 60)], { idempotency });
      const issued = await store.issue(request, now, { outboxPending: true });
      expect(issued).toMatchObject({ kind: "issued", resendAfterSeconds: 60 });
      const entry = keys.idempotency(appId, "slow");
      await redis.del(entry); // as when it lapses
      expect(await store.confirm(request, now, 60)).toBe(true);
      expect(await store.replay(appId, "slow", now + 3_600_000)).toMatchObject({
        kind: "replayed",
        record: { id: first.id },
        resendAfterSeconds: 60,
        fingerprint: idempotency.fingerprint,
      });
      expect(await store.replay(appId, "slow", now + 24 * 3_600_000)).toBeNull();
      expect(await redis.pttl(entry)).toBeGreaterThan(23 * 3_600_000);
      // Repeated, it changes nothing; a hold never makes it pending again.
      expect(await store.confirm(request, now, 60)).toBe(true);
      expect(await store.hold(request, now, 60, 60_000)).toBe(true);
      expect(await store.replay(appId, "slow", now)).toMatchObject({ kind: "replayed" });
    });

    it("holds a keyed send's entry pending while its commit is settled, never over another send's", async () => {
      const now = baseTime();
      const appId = `app-${randomBytes(4).toString("hex")}`;
      const idempotency = { key: "unsure", fingerprint: "fe".repeat(32) };
      const first = issueRequest(codeRecord(appId, now), [], { idempotency });
      await store.issue(first, now, { outboxPending: true });
      const entry = keys.idempotency(appId, "unsure");
      expect(await store.hold(first, now, 0, 120_000)).toBe(true);
      expect(await redis.pttl(entry)).toBeGreaterThan(60_000);
      // a shorter hold does not cut it short
      expect(await store.hold(first, now, 0, 1_000)).toBe(true);
      expect(await redis.pttl(entry)).toBeGreaterThan(60_000);
      expect(await store.replay(appId, "unsure", now)).toEqual({
        kind: "in_progress",
        fingerprint: idempotency.fingerprint,
      });
      // lapsed meanwhile: written again, pending
      await redis.del(entry);
      expect(await store.hold(first, now, 0, 120_000)).toBe(true);
      expect(await store.replay(appId, "unsure", now)).toEqual({
        kind: "in_progress",
        fingerprint: idempotency.fingerprint,
      });

      // Another send took the key after it lapsed: neither a hold nor a confirm takes it back.
      await redis.del(entry);
      const second = issueRequest(codeRecord(appId, now), [], { idempotency });
      await store.issue(second, now, { outboxPending: true });
      await store.confirm(second, now, 0);
      expect(await store.hold(first, now, 0, 120_000)).toBe(false);
      expect(await store.confirm(first, now, 0)).toBe(false);
      expect(await store.replay(appId, "unsure", now)).toMatchObject({
        kind: "replayed",
        record: { id: second.code.id },
      });
    });

    // Regression: a send whose issue reply was lost (or late) left its code superseding the one
    // the user held, and its counters spent; the withdraw that undoes it must work without that
    // reply, and be safe to retry. @see .scratch/cluster/redis-lost-reply.mjs
    it("withdraws without the issue's reply, only a code that exists, and refunds it once", async () => {
      const now = baseTime();
      const appId = `app-${randomBytes(4).toString("hex")}`;
      const counters = createRedisCounterStore(redis, keys);
      const rules = [counter("r:60", 5, 60), counter("flag", 5, 60, { increment: 0 })];
      const delivered = codeRecord(appId, now);
      await store.issue(issueRequest(delivered, rules), now);
      // An issue that never reached Redis wrote nothing: nothing to withdraw, nothing to refund.
      expect(await store.withdraw(issueRequest(codeRecord(appId, now), rules), now)).toBe(false);
      expect((await counters.peek(appId, "r:60", now)).count).toBe(1);
      expect((await store.get(appId, delivered.id))?.status).toBe("pending");

      const resend = issueRequest(codeRecord(appId, now), rules);
      await store.issue(resend, now);
      expect((await store.get(appId, delivered.id))?.status).toBe("superseded");
      expect(await store.withdraw(resend, now)).toBe(true);
      expect(await store.get(appId, resend.code.id)).toBeNull();
      expect((await counters.peek(appId, "r:60", now)).count).toBe(1);
      // The delivered code is the slot's pending code again, found by recipient too.
      expect(
        await store.consumeAttempt(
          slotRef(appId, "email", delivered.to, "sign_in"),
          { limit: 20, windowSeconds: 60 },
          now,
        ),
      ).toMatchObject({ kind: "counted", record: { id: delivered.id, status: "pending" } });
      // A retried withdraw (its first reply lost too) finds nothing and refunds nothing more.
      expect(await store.withdraw(resend, now)).toBe(false);
      expect((await counters.peek(appId, "r:60", now)).count).toBe(1);
      expect(await redis.keys(`${prefix}{${appId}}:d:*`)).toEqual([]);
    });

    // Regression: a withdrawn send's counters were refunded to 0 but kept their window's end, so the
    // next send joined the withdrawn one's window: with Redis muted, a send to a new address failed,
    // and 22 s later one went out with resend_after 38, and a third 38 s after that, against 1 per
    // 60 s. SQLite rolls the failed send back, leaving no window. @see the cluster review, finding 2
    it("leaves no window behind a withdrawn send, so the next send starts its own", async () => {
      const now = baseTime();
      const appId = `app-${randomBytes(4).toString("hex")}`;
      const counters = createRedisCounterStore(redis, keys);
      const rules = [counter("r:60", 1, 60)];
      const failed = issueRequest(codeRecord(appId, now), rules);
      await store.issue(failed, now);
      expect(await store.withdraw(failed, now)).toBe(true);
      expect(await counters.peek(appId, "r:60", now)).toEqual({ count: 0, resetAtMs: 0 });
      expect(await redis.exists(keys.counter(appId, "r:60"))).toBe(0);

      const later = now + 22_100;
      expect(await store.issue(issueRequest(codeRecord(appId, later), rules), later)).toMatchObject({
        kind: "issued",
      });
      expect(await counters.peek(appId, "r:60", later)).toEqual({ count: 1, resetAtMs: later + 60_000 });
      // and the rule holds from that send: no other for 60 s
      const refused = await store.issue(issueRequest(codeRecord(appId, now + 60_500), rules), now + 60_500);
      expect(refused).toMatchObject({ kind: "refused", rule: "r:60:1/60s" });
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
      // a wrong guess, then the right one: the failure counter keeps the wrong one's failure
      await store.consumeAttempt({ appId: "app2", id: record.id }, { limit: 20, windowSeconds: 86_400 }, now);
      await store.consumeAttempt({ appId: "app2", id: record.id }, { limit: 20, windowSeconds: 86_400 }, now);
      await store.approve("app2", record.id, tokenFor(record, now), failedChecksKey("email", record.to), now);
      // A new code for the slot moves the approved one to its own key: that key has a TTL too.
      await store.issue(issueRequest(codeRecord("app2", now + 1000)), now + 1000);
      const written = await redis.keys(`${prefix}{app2}:*`);
      // the slot's code, the displaced code, counter, idempotency entry and its first answer,
      // token, failure counter
      expect(written).toHaveLength(7);
      for (const key of written)
        expect({ key, ttl: await redis.pttl(key) }).toMatchObject({ ttl: expect.any(Number) });
      expect((await Promise.all(written.map((key) => redis.pttl(key)))).every((ttl) => ttl > 0)).toBe(true);
    });

    // The outbox drops a waited message whose code a read finds missing (it is gone: Redis lost
    // it), so a code must stay readable as long as its message may be sent, until its expiry, and
    // a resend must not shorten the life of the code it displaces. @see fix-stores review 1, 4
    it("keeps a code readable an hour past its expiry, under its slot and once a resend displaced it", async () => {
      const now = baseTime();
      const first = codeRecord("app5", now);
      await store.issue(issueRequest(first), now);
      const tag = parseVerificationId(first.id)?.slotTag ?? "";
      // (Redis counts the TTL down in real time while the test runs: a few seconds of slack)
      const expectTtl = async (key: string, ms: number) => {
        const ttl = await redis.pttl(key);
        expect(ttl).toBeLessThanOrEqual(ms);
        expect(ttl).toBeGreaterThan(ms - 5_000);
      };
      await expectTtl(keys.slot("app5", tag), first.expiresAtMs + CODE_GRACE_MS - now);
      const later = now + 60_000;
      const second = codeRecord("app5", later);
      await store.issue(issueRequest(second), later);
      // the displaced code keeps what its slot key had left; the withdraw's hint lasts a minute
      await expectTtl(keys.code("app5", first.id), first.expiresAtMs + CODE_GRACE_MS - now);
      await expectTtl(`${keys.app("app5")}d:${second.id}`, 60_000);
      await expectTtl(keys.slot("app5", tag), second.expiresAtMs + CODE_GRACE_MS - later);
      expect(await store.get("app5", first.id)).toEqual({ ...first, status: "superseded" });
    });

    it("moves a displaced code to the key its id names, whatever characters the id holds", async () => {
      // The issue script spells the displaced code's id in base64url itself (Lua); every one of
      // the 64 characters must come out as Node spells it, or the id would lose its code.
      const now = baseTime();
      const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
      for (let offset = 0; offset < alphabet.length; offset += 16) {
        const sample = codeRecord("app3", now);
        const tag = parseVerificationId(sample.id)?.slotTag ?? "";
        const time = sample.id.slice(3, 12);
        const first = {
          ...sample,
          id: `vf_${time}${tag}${(alphabet + alphabet).slice(offset, offset + 24)}`,
        };
        await store.issue(issueRequest(first), now);
        await store.issue(issueRequest(codeRecord("app3", now)), now);
        expect(await redis.exists(keys.code("app3", first.id))).toBe(1);
        expect(await store.get("app3", first.id)).toEqual({ ...first, status: "superseded" });
      }
    });

    it("never hands a check by recipient the code of another slot that shares its tag", async () => {
      // Tags are 72 bits, so two live slots of an app sharing one is a ~2^-72 accident. Should it
      // happen, a check by recipient still takes only a code issued to that recipient and purpose.
      const now = baseTime();
      const budget = { limit: 20, windowSeconds: 86_400 };
      await store.issue(issueRequest(codeRecord("app4", now, { to: "bob@example.com" })), now);
      const bob = slotRef("app4", "email", "bob@example.com", "sign_in");
      for (const [channel, to, purpose] of [
        ["email", "eve@example.com", "sign_in"],
        ["email", "bob@example.co", "sign_in"],
        ["email", "bob@example.com", "sign_up"],
        ["sms", "bob@example.com", "sign_in"],
      ] as const) {
        const sharingTag = { ...slotRef("app4", channel, to, purpose), slotTags: bob.slotTags };
        expect(await store.consumeAttempt(sharingTag, budget, now)).toEqual({ kind: "not_found" });
      }
      expect(await store.consumeAttempt(bob, budget, now)).toMatchObject({ kind: "counted" });
    });

    it(`keeps everything a live code occupies within ${CODE_BYTES_GOAL} bytes`, async () => {
      // Measured with production-shaped keys (default prefix, app "default", a 20-character email,
      // a Chinese mobile number), under random recipients so parallel runs cannot collide. The
      // footprint is every key the send added under the app, so a key the layout forgot to
      // mention would count too; the keys are deleted afterwards.
      const production = new RedisKeys("vd:");
      const live = createRedisVerificationStore(redis, production);
      const appKeys = async () => {
        const found = new Set<string>();
        let cursor = "0";
        do {
          const [next, batch] = await redis.scan(
            cursor,
            "MATCH",
            `${production.app("default")}*`,
            "COUNT",
            1000,
          );
          for (const key of batch) found.add(key);
          cursor = next;
        } while (cursor !== "0");
        return found;
      };
      const now = baseTime();
      const random = randomBytes(4).toString("hex");
      const sizes: Record<string, number> = {};
      const written: string[] = [];
      for (const [channel, to] of [
        ["email", `${random}@example.com`],
        ["sms", `+86138${Number.parseInt(random, 16).toString().padStart(10, "0").slice(-8)}`],
      ] as const) {
        const record = codeRecord("default", now, { channel, to });
        const before = await appKeys();
        await live.issue(issueRequest(record), now);
        const added = [...(await appKeys())].filter((key) => !before.has(key));
        written.push(...added);
        // One key, under the slot's tag (the id's), not under the recipient or the id.
        expect(added).toEqual([production.slot("default", parseVerificationId(record.id)?.slotTag ?? "")]);
        let bytes = 0;
        for (const key of added) bytes += Number(await redis.call("MEMORY", "USAGE", key));
        sizes[channel] = bytes;
        expect(await live.get("default", record.id)).toEqual(record);
      }
      await redis.del(...written);
      console.info(
        `redis memory per live code (bytes, MEMORY USAGE, all its keys): ${JSON.stringify(sizes)}`,
      );
      expect(sizes["email"]).toBeLessThanOrEqual(CODE_BYTES_GOAL);
      expect(sizes["sms"]).toBeLessThanOrEqual(CODE_BYTES_GOAL);
    });
  });
}
