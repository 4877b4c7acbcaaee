import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { backendAddress, backendMissing, probeRedis, throughProxy } from "../../../test/cluster/backends.js";
import { eventually, freePort } from "../../../test/cluster/processes.js";
import { startTcpProxy } from "../../../test/servers/tcp-proxy.js";
import { createLogger } from "../../observability/logger.js";
import { connectRedis, createRedisClient, REDIS_SOCKET_TIMEOUT_MS } from "./redis-client.js";

// maxmemory and its policy are server-wide settings: this suite starts a Redis of its own rather
// than change the shared one under the other suites.
const serverFound = spawnSync("redis-server", ["--version"]).status === 0;

if (!serverFound) {
  backendMissing(
    "connectRedis: the eviction policy",
    "no redis-server binary to start a Redis of the suite's own",
  );
} else {
  describe("connectRedis: the eviction policy", () => {
    let server: ChildProcess;
    let url: string;
    let admin: Redis;
    const logger = createLogger({ level: "silent", devCodes: false });
    beforeAll(async () => {
      const port = await freePort();
      url = `redis://127.0.0.1:${port}`;
      server = spawn(
        "redis-server",
        ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        { stdio: "ignore" },
      );
      // Retried until the server listens; commands wait in the offline queue meanwhile.
      admin = new Redis(url, { retryStrategy: () => 50 });
      admin.on("error", () => {});
      await admin.ping();
    });
    afterAll(async () => {
      admin?.disconnect();
      server?.kill("SIGKILL");
    });

    const configure = async (maxmemory: string, policy: string) => {
      await admin.config("SET", "maxmemory", maxmemory);
      await admin.config("SET", "maxmemory-policy", policy);
    };

    // Regression: every key verifyd writes has a TTL, so a volatile-lru Redis that filled up
    // evicted a recipient's counters under a flood and let its limits through.
    // @see .scratch/storage redis-eviction.test.ts
    it.each(["volatile-lru", "allkeys-lru", "volatile-ttl"])(
      "refuses a Redis with maxmemory set that evicts by %s, naming the setting",
      async (policy) => {
        await configure("100mb", policy);
        await expect(connectRedis({ url, logger })).rejects.toThrow(
          new RegExp(`maxmemory-policy ${policy}.*Set maxmemory-policy noeviction`),
        );
      },
    );

    it("connects to a Redis that never evicts: noeviction, or no maxmemory", async () => {
      for (const [maxmemory, policy] of [
        ["100mb", "noeviction"],
        ["0", "volatile-lru"],
      ] as const) {
        await configure(maxmemory, policy);
        const redis = await connectRedis({ url, logger });
        expect(await redis.ping()).toBe("PONG");
        redis.disconnect();
      }
    });
  });
}

const redisProbe = await probeRedis();
if (!redisProbe.ok) {
  backendMissing("createRedisClient: a connection that goes silent", redisProbe.reason);
} else {
  const url = redisProbe.url;
  describe("createRedisClient: a connection that goes silent", () => {
    // Regression: only commands timed out (1 s); the socket stayed "connected", so every later
    // command timed out on it too, for the ~15 minutes the kernel takes (for good behind a proxy
    // that keeps acknowledging), and every send and /readyz answered 503 all along.
    // @see .scratch/cluster/redis-faults.mjs B5
    it("is replaced within seconds, so commands succeed again (the server's and the delivery thread's client)", async () => {
      const proxy = await startTcpProxy(backendAddress(url, 6379));
      const redis = createRedisClient({
        url: throughProxy(url, proxy.port),
        logger: createLogger({ level: "silent", devCodes: false }),
      });
      try {
        await redis.connect();
        expect(await redis.ping()).toBe("PONG");
        proxy.freeze();
        await expect(redis.ping()).rejects.toThrow(/timed out/i);
        const frozenAt = Date.now();
        expect(await eventually(async () => (await redis.ping()) === "PONG", 8_000)).toBe(true);
        expect(Date.now() - frozenAt).toBeLessThan(REDIS_SOCKET_TIMEOUT_MS + 2_000);
      } finally {
        redis.disconnect();
        await proxy.close();
      }
    });
  });
}

if (!redisProbe.ok) {
  backendMissing("connectRedis: the URL's database", redisProbe.reason);
} else {
  describe("connectRedis: the URL's database", () => {
    const logger = createLogger({ level: "silent", devCodes: false });
    const base = redisProbe.url.replace(/\/\d*$/, "");

    // Regression: Redis refused `SELECT 99` (it has 16 databases by default), ioredis only emitted
    // an error and went on in database 0, and the server started and answered ready there.
    it("refuses a database number the server does not have, naming it", async () => {
      await expect(connectRedis({ url: `${base}/99`, logger })).rejects.toThrow(
        /Redis has no database 99 \(ERR DB index is out of range\)/,
      );
    });

    it("works in the database the URL names", async () => {
      const redis = await connectRedis({ url: `${base}/3`, logger });
      const key = `vdtest:select:${process.pid}:${Date.now()}`;
      const admin = new Redis(`${base}/3`);
      try {
        await redis.set(key, "here", "PX", 10_000);
        expect(await admin.get(key)).toBe("here");
      } finally {
        redis.disconnect();
        admin.disconnect();
      }
    });
  });
}
