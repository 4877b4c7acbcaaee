import type { Redis } from "ioredis";
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  backendAddress,
  backendMissing,
  deleteRedisPrefix,
  dropSchema,
  missingReason,
  probePostgres,
  probeRedis,
  throughProxy,
  uniqueName,
} from "../../../test/cluster/backends.js";
import { startTcpProxy, type TcpProxy } from "../../../test/servers/tcp-proxy.js";
import type { IssueOutcome, IssueRequest, VerificationStore } from "../../core/ports.js";
import { baseTime, codeRecord, counter, issueRequest } from "../contract/fixtures.contract.js";
import { migratePostgres } from "../postgres/postgres-migrator.js";
import { createPostgresOutboxWriter, type OutboxWriter } from "../postgres/postgres-outbox-writer.js";
import { createPostgresPool } from "../postgres/postgres-pool.js";
import { connectRedis } from "../redis/redis-client.js";
import { RedisKeys } from "../redis/redis-keys.js";
import {
  createRedisVerificationStore,
  IDEMPOTENCY_PENDING_TTL_MS,
} from "../redis/redis-verification-store.js";
import { createClusterVerificationStore } from "./cluster-verification-store.js";

/**
 * A send under an Idempotency-Key whose outbox commit's reply never came: the store cannot tell
 * whether the row was committed, answers 503, and must settle that in the background, so that a
 * retry under the key is answered "in progress" until then and replays the first send afterwards,
 * with its message queued exactly once. Before, the key's pending entry lapsed after 30 s and a
 * retry sent a second code that superseded the first. @see .scratch/idem/t4.mjs
 */
const [redisProbe, postgresProbe] = await Promise.all([probeRedis(), probePostgres()]);
const silent = { debug() {}, info() {}, warn() {}, error() {} };

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error("expected a rejection");
}

if (!redisProbe.ok || !postgresProbe.ok) {
  backendMissing(
    "cluster store: an outbox commit whose reply is lost",
    missingReason(redisProbe, postgresProbe),
  );
} else {
  const redisUrl = redisProbe.url;
  const databaseUrl = postgresProbe.url;
  describe("cluster store: an outbox commit whose reply is lost", () => {
    const schema = uniqueName("lostreply");
    const prefix = `${uniqueName("lostreply")}:`;
    const keys = new RedisKeys(prefix);
    // The store reaches PostgreSQL through a proxy that can lose a reply; the test reads directly.
    let proxy: TcpProxy;
    let direct: pg.Pool;
    let pool: pg.Pool;
    let redis: Redis;
    let writer: OutboxWriter;
    // How the next enqueue goes: as the real writer, or failing with its outcome unknown before
    // its statement was sent (a connection that broke as it was written: nothing committed).
    let enqueueFails = false;
    let store: VerificationStore;

    beforeAll(async () => {
      direct = createPostgresPool({ url: databaseUrl, poolSize: 2, schema, logger: silent });
      await migratePostgres(direct, schema);
      proxy = await startTcpProxy(backendAddress(databaseUrl, 5432));
      pool = createPostgresPool({
        url: throughProxy(databaseUrl, proxy.port),
        poolSize: 4,
        schema,
        logger: silent,
      });
      redis = await connectRedis({ url: redisUrl, logger: silent });
      writer = createPostgresOutboxWriter(pool, { maxConcurrentCommits: 2 });
      store = createClusterVerificationStore({
        hot: createRedisVerificationStore(redis, keys),
        outbox: {
          ...writer,
          async enqueue(message) {
            if (enqueueFails) throw new Error("Connection terminated unexpectedly");
            await writer.enqueue(message);
          },
        },
        deliveries: async () => [],
        logger: silent,
      });
    });
    afterAll(async () => {
      redis?.disconnect();
      await pool?.end();
      await proxy?.close();
      await direct?.end();
      await Promise.all([dropSchema(databaseUrl, schema), deleteRedisPrefix(redisUrl, prefix)]);
    });

    const rowsOf = async (verificationId: string) =>
      (await direct.query("SELECT id FROM outbox WHERE verification_id = $1", [verificationId])).rowCount;

    // Retries under the first send's key, as a backend would, until it is answered otherwise than
    // "in progress" (or the time is up): what that answer is.
    const retryUntilAnswered = async (first: IssueRequest, now: number): Promise<IssueOutcome> => {
      const deadline = Date.now() + 10_000;
      for (;;) {
        const retry = issueRequest(codeRecord(first.appId, now), first.counters, {
          ...(first.idempotency ? { idempotency: first.idempotency } : {}),
        });
        const outcome = await store.issue(retry, now);
        if (outcome.kind !== "in_progress" || Date.now() > deadline) return outcome;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    };

    it("replays the first send to a retry under its key, its row queued once, when the commit's reply was lost", async () => {
      const now = baseTime();
      // warm: the pool's connection exists and the statement is prepared
      await store.issue(issueRequest(codeRecord("app1", now)), now);
      const first = issueRequest(codeRecord("app1", now), [counter("r:60", 1, 60)], {
        idempotency: { key: "lost-reply", fingerprint: "1".repeat(64) },
      });
      // The statement carrying this row reaches PostgreSQL (and commits); its answer never comes.
      proxy.loseReplyTo(first.outbox?.id ?? "");
      const error = await rejection(store.issue(first, now));
      expect(error).toMatchObject({
        code: "STORE_UNAVAILABLE",
        details: { retryAfterSeconds: expect.any(Number) },
      });
      expect(await rowsOf(first.code.id)).toBe(1);

      expect(await retryUntilAnswered(first, now)).toMatchObject({
        kind: "replayed",
        record: { id: first.code.id, status: "pending" },
      });
      expect(await rowsOf(first.code.id)).toBe(1);
      // The key replays for its day, not for the 30 s a pending entry lives.
      expect(await redis.pttl(keys.idempotency("app1", "lost-reply"))).toBeGreaterThan(
        IDEMPOTENCY_PENDING_TTL_MS,
      );
    });

    it("queues the row of a send whose commit's outcome was unknown but never happened, once, and replays it", async () => {
      const now = baseTime();
      const first = issueRequest(codeRecord("app2", now), [counter("r:60", 1, 60)], {
        idempotency: { key: "never-sent", fingerprint: "2".repeat(64) },
      });
      enqueueFails = true;
      const error = await rejection(store.issue(first, now));
      enqueueFails = false;
      expect(error).toMatchObject({
        code: "STORE_UNAVAILABLE",
        details: { retryAfterSeconds: expect.any(Number) },
      });

      expect(await retryUntilAnswered(first, now)).toMatchObject({
        kind: "replayed",
        record: { id: first.code.id, status: "pending" },
      });
      // The message the code belongs to is queued after all: the user gets the code the store kept.
      expect(await rowsOf(first.code.id)).toBe(1);
    });
  });
}
