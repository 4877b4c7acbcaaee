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
import { type ClusterBackend, createClusterBackend } from "./index.js";

// Regression: each `/readyz` (unauthenticated) made three round trips, a Redis PING and a SELECT 1
// on each PostgreSQL pool: 50 connections calling it cost about two PostgreSQL commits a call, at
// a p99 of 250 ms. Callers at once now share one probe, whose answer serves for about a second.
const [redisProbe, postgresProbe] = await Promise.all([probeRedis(), probePostgres()]);
const silent = { debug() {}, info() {}, warn() {}, error() {} };
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

if (!redisProbe.ok || !postgresProbe.ok) {
  backendMissing("cluster readiness", missingReason(redisProbe, postgresProbe));
} else {
  const redisUrl = redisProbe.url;
  const databaseUrl = postgresProbe.url;
  describe("cluster readiness", () => {
    const databaseSchema = uniqueName("ready");
    const redisPrefix = `${uniqueName("ready")}:`;
    let redisProxy: TcpProxy;
    let postgresProxy: TcpProxy;
    let backend: ClusterBackend;

    beforeAll(async () => {
      [redisProxy, postgresProxy] = await Promise.all([
        startTcpProxy(backendAddress(redisUrl, 6379)),
        startTcpProxy(backendAddress(databaseUrl, 5432)),
      ]);
      backend = await createClusterBackend({
        redisUrl: throughProxy(redisUrl, redisProxy.port),
        databaseUrl: throughProxy(databaseUrl, postgresProxy.port),
        databaseSchema,
        redisPrefix,
        logger: silent,
      });
    });
    afterAll(async () => {
      await backend?.close();
      await Promise.all([redisProxy?.close(), postgresProxy?.close()]);
      await Promise.all([dropSchema(databaseUrl, databaseSchema), deleteRedisPrefix(redisUrl, redisPrefix)]);
    });

    it("makes one probe for fifty callers at once and for the calls right after them", async () => {
      // what a probe sends: a PING to Redis, a SELECT 1 (simple query) on each pool
      const pings = redisProxy.count("\r\nping\r\n");
      const selects = postgresProxy.count("SELECT 1\u0000");
      const answers = await Promise.all(Array.from({ length: 50 }, () => backend.ready()));
      expect(answers).toEqual(Array(50).fill(true));
      for (let call = 0; call < 10; call++) expect(await backend.ready()).toBe(true);
      expect([pings(), selects()]).toEqual([1, 2]);
      // a second later the answer is old: the next call probes again
      await sleep(1_100);
      expect(await backend.ready()).toBe(true);
      expect([pings(), selects()]).toEqual([2, 4]);
    });

    it("sees a backend gone within a second or so of the probe it kept, and back likewise", async () => {
      expect(await backend.ready()).toBe(true);
      postgresProxy.cut();
      const cutAtMs = performance.now();
      while ((await backend.ready()) && performance.now() - cutAtMs < 5_000) await sleep(20);
      const seenAfterMs = performance.now() - cutAtMs;
      expect(await backend.ready()).toBe(false);
      // the kept answer's second, and the failing probe's own few ms (the proxy refuses at once)
      expect(seenAfterMs).toBeLessThan(2_000);
      postgresProxy.restore();
      const restoredAtMs = performance.now();
      while (!(await backend.ready()) && performance.now() - restoredAtMs < 5_000) await sleep(20);
      expect(await backend.ready()).toBe(true);
      expect(performance.now() - restoredAtMs).toBeLessThan(3_000);
    });

    // Regression: on pooled connections gone silent (a stalled PostgreSQL), a probe waited out
    // the driver's timeouts: the first `/readyz` calls after the stall took 6 s to say 503.
    it("answers not ready within a second or so when a backend's connections go silent", async () => {
      expect(await backend.ready()).toBe(true);
      await sleep(1_100); // past the kept answer
      postgresProxy.freeze();

      const startedAtMs = performance.now();
      const ready = await backend.ready();

      expect(ready).toBe(false);
      expect(performance.now() - startedAtMs).toBeLessThan(1_800);
    });
  });
}
