import type { Redis } from "ioredis";
import pg from "pg";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  backendAddress,
  backendMissing,
  deleteRedisPrefix,
  probeRedis,
  throughProxy,
  uniqueName,
} from "../../../test/cluster/backends.js";
import { startTcpProxy, type TcpProxy } from "../../../test/servers/tcp-proxy.js";
import type { Logger, VerificationStore } from "../../core/ports.js";
import { baseTime, codeRecord, issueRequest } from "../contract/fixtures.contract.js";
import { connectRedis } from "../redis/redis-client.js";
import { RedisKeys } from "../redis/redis-keys.js";
import { createRedisVerificationStore } from "../redis/redis-verification-store.js";
import { createClusterVerificationStore, MAX_PENDING_WITHDRAWS } from "./cluster-verification-store.js";

/**
 * The background retries of failed sends (withdraws, confirms) while Redis is away, logged as one
 * run: a line when they start failing, a reminder at most once an interval with counts, and one
 * line when the last has ended. Redis is taken away by cutting a loopback proxy before it.
 * Regression: with Redis muted at 80 sends/s, each failed send logged a warning with its stack
 * and then a line of its own when its withdraw went through, and each past the cap an error of its
 * own. @see the cluster review, finding 3
 */
const redisProbe = await probeRedis();
const silent = { debug() {}, info() {}, warn() {}, error() {} };
// The reminder interval here (a minute in service): short enough to see reminders while cut.
const INTERVAL_MS = 300;

interface Line {
  level: "debug" | "info" | "warn" | "error";
  message: string;
  fields: Record<string, unknown>;
}

function recordingLogger(lines: Line[]): Logger {
  const at =
    (level: Line["level"]) =>
    (fields: object, message = "") =>
      lines.push({ level, message, fields: fields as Record<string, unknown> });
  return { debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error") };
}

async function until(done: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error("timed out");
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

if (!redisProbe.ok) {
  backendMissing("cluster store: the log of retries while Redis is away", redisProbe.reason);
} else {
  const url = redisProbe.url;
  describe("cluster store: the log of retries while Redis is away", () => {
    const prefix = `${uniqueName("retrylog")}:`;
    let proxy: TcpProxy;
    let redis: Redis;
    let lines: Line[];
    let store: VerificationStore;
    // Commits wait here until the test opens it, then fail as PostgreSQL refusing them, or not.
    let gate: { open: () => void; wait: Promise<void>; waiting: number; fail: boolean };

    beforeEach(async () => {
      proxy = await startTcpProxy(backendAddress(url, 6379));
      redis = await connectRedis({ url: throughProxy(url, proxy.port), logger: silent });
      lines = [];
      let open = () => {};
      const wait = new Promise<void>((resolve) => {
        open = resolve;
      });
      gate = { open, wait, waiting: 0, fail: true };
      store = createClusterVerificationStore({
        hot: createRedisVerificationStore(redis, new RedisKeys(prefix)),
        // A stand-in for PostgreSQL, as in cluster-verification-store.test.ts.
        outbox: {
          async enqueue() {
            gate.waiting += 1;
            await gate.wait;
            if (gate.fail) {
              throw new pg.DatabaseError("canceling statement due to statement timeout", 0, "error");
            }
          },
          requeue: async () => {},
          drain: async () => {},
        },
        deliveries: async () => [],
        logger: recordingLogger(lines),
        retryLogIntervalMs: INTERVAL_MS,
      });
    });
    afterEach(async () => {
      redis.disconnect();
      await proxy.close();
      await deleteRedisPrefix(url, prefix);
    });

    /** Starts `count` sends and waits until each has reached Redis and waits on its commit. */
    const sendsAtTheCommit = async (count: number, keyed: boolean) => {
      const now = baseTime();
      const appId = `app-${uniqueName("a")}`;
      const records = Array.from({ length: count }, (_, index) =>
        codeRecord(appId, now, { to: `r${index}@example.com` }),
      );
      const sends = records.map((record, index) =>
        store.issue(
          issueRequest(
            record,
            [],
            keyed ? { idempotency: { key: `k${index}`, fingerprint: "a".repeat(64) } } : {},
          ),
          now,
        ),
      );
      await until(() => gate.waiting === count);
      return { appId, sends, ids: records.map((record) => record.id) };
    };

    /** Cuts Redis, and waits until the client has seen it go. */
    const cutRedis = async () => {
      proxy.cut();
      await until(() => redis.status !== "ready");
    };

    it("tells failing withdraws once, reminds with counts, and sums them up once they went through", async () => {
      const count = MAX_PENDING_WITHDRAWS + 20;
      const { appId, sends, ids } = await sendsAtTheCommit(count, false);
      await cutRedis();
      gate.open();
      const answers = await Promise.allSettled(sends);
      expect(answers.every((answer) => answer.status === "rejected")).toBe(true);
      // One line for the run, one for the first send past the cap: not one (with a stack) per send.
      expect(lines.map((line) => [line.level, line.message])).toEqual([
        ["warn", "could not withdraw a failed send's code; retrying in the background, further ones counted"],
        [
          "error",
          "too many failed sends' withdraws pending: a further one leaves its code in place (counted)",
        ],
      ]);

      await new Promise((resolve) => setTimeout(resolve, INTERVAL_MS * 2.5));
      const reminders = lines.filter((line) => line.message === "failed sends' withdraws still pending");
      expect(reminders.length).toBeGreaterThanOrEqual(1);
      expect(reminders[0]?.fields).toMatchObject({
        pending: MAX_PENDING_WITHDRAWS,
        retried: MAX_PENDING_WITHDRAWS,
        tooManyPending: 20,
      });

      proxy.restore();
      await until(() => lines.some((line) => line.message === "failed sends' withdraws ended"));
      const ended = lines.filter((line) => line.message === "failed sends' withdraws ended");
      expect(ended).toHaveLength(1);
      // (error: 20 sends keep their code, given up at once)
      expect(ended[0]).toMatchObject({
        level: "error",
        fields: {
          pending: 0,
          retried: MAX_PENDING_WITHDRAWS,
          withdrawn: MAX_PENDING_WITHDRAWS,
          tooManyPending: 20,
        },
      });
      expect(ended[0]?.fields.gaveUp).toBeUndefined();
      // Regression: the sends given up were no longer named anywhere but the first one.
      // @see the session review, finding 4
      const givenUpIds = ended[0]?.fields.givenUpIds as string[];
      expect(new Set(givenUpIds).size).toBe(20);
      for (const id of givenUpIds) expect(ids).toContain(id);
      // Nothing else was logged; the reminders stop with the run.
      const stillPending = lines.filter((line) => line.message === "failed sends' withdraws still pending");
      expect(lines.length - stillPending.length).toBe(3);
      // The withdraws did go through: only the codes of the sends given up at once are left.
      expect(await redis.keys(`${prefix}{${appId}}:s:*`)).toHaveLength(20);
      const settled = lines.length;
      await new Promise((resolve) => setTimeout(resolve, INTERVAL_MS * 2));
      expect(lines).toHaveLength(settled);
    });

    // Regression: a run's ended line counted the withdraws given up (`gaveUp: 5`) but named none
    // of their sends, whose codes stay in place. @see the session review, finding 4
    it("names the sends whose withdraws were given up in the run's ended line", {
      timeout: 40_000,
    }, async () => {
      const { sends, ids } = await sendsAtTheCommit(3, false);
      await cutRedis();
      gate.open();
      await Promise.allSettled(sends);
      // the withdraws' retries run out (about 16 s) while Redis stays away
      await until(() => lines.some((line) => line.message === "failed sends' withdraws ended"), 30_000);
      const ended = lines.find((line) => line.message === "failed sends' withdraws ended");
      expect(ended).toMatchObject({ level: "error", fields: { pending: 0, retried: 3, gaveUp: 3 } });
      expect([...((ended?.fields.givenUpIds ?? []) as string[])].sort()).toEqual([...ids].sort());
    });

    it("tells failing confirms once, and sums them up once they went through", async () => {
      const { sends } = await sendsAtTheCommit(50, true);
      await cutRedis();
      gate.fail = false;
      gate.open();
      // The messages are queued: the answers stand whatever the confirms do.
      for (const answer of await Promise.all(sends)) expect(answer).toMatchObject({ kind: "issued" });
      expect(lines.map((line) => [line.level, line.message])).toEqual([
        ["warn", "could not confirm an idempotency entry; retrying in the background, further ones counted"],
      ]);
      proxy.restore();
      await until(() => lines.some((line) => line.message === "idempotency entries' confirms ended"));
      const ended = lines.filter((line) => line.message === "idempotency entries' confirms ended");
      expect(ended).toEqual([
        {
          level: "info",
          message: "idempotency entries' confirms ended",
          fields: expect.objectContaining({ pending: 0, retried: 50, confirmed: 50 }),
        },
      ]);
    });
  });
}
