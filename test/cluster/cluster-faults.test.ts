import { randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CodeSecrets } from "../../src/core/secrets.js";
import { slotKey } from "../../src/core/verification/keys.js";
import { startTcpProxy, type TcpProxy } from "../servers/tcp-proxy.js";
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
} from "./backends.js";
import { eventually, type HttpReply, request, type ServerProcess, startServerProcess } from "./processes.js";

/**
 * Backend faults (issue 8): a server reaches Redis and PostgreSQL through loopback proxies this
 * test cuts and restores, so the shared services are never touched. While a backend is cut the
 * server answers /readyz 503 and sends 503 STORE_UNAVAILABLE (problem+json), issues nothing, and
 * stays up; when it is restored the server recovers by itself.
 */
const [redis, postgres] = await Promise.all([probeRedis(), probePostgres()]);

// Restoring must not need a restart: reconnect backoff is capped at 2 s, so this is generous.
const RECOVERY_MS = 10_000;

if (!redis.ok || !postgres.ok) {
  backendMissing("cluster: backend faults", missingReason(redis, postgres));
} else {
  describe("cluster: backend faults", () => {
    const schema = uniqueName("faults");
    const prefix = `${uniqueName("faults")}:`;
    const secret = randomBytes(24).toString("base64url");
    let redisProxy: TcpProxy;
    let postgresProxy: TcpProxy;
    let server: ServerProcess;
    // A direct connection (not through the proxy) to look at what the server left in Redis.
    let inspect: Redis;

    beforeAll(async () => {
      [redisProxy, postgresProxy] = await Promise.all([
        startTcpProxy(backendAddress(redis.url, 6379)),
        startTcpProxy(backendAddress(postgres.url, 5432)),
      ]);
      inspect = new Redis(redis.url, { maxRetriesPerRequest: 1 });
      server = await startServerProcess({
        VERIFYD_REDIS_URL: throughProxy(redis.url, redisProxy.port),
        VERIFYD_DATABASE_URL: throughProxy(postgres.url, postgresProxy.port),
        VERIFYD_DATABASE_SCHEMA: schema,
        VERIFYD_REDIS_PREFIX: prefix,
        VERIFYD_SECRET: secret,
        VERIFYD_TRUST_PROXY: "127.0.0.1",
        // Errors are expected here; keep the output for a failure message only.
        VERIFYD_LOG_LEVEL: "error",
      });
    });
    afterAll(async () => {
      await server?.stop();
      inspect?.disconnect();
      await Promise.all([redisProxy?.close(), postgresProxy?.close()]);
      await Promise.all([dropSchema(postgres.url, schema), deleteRedisPrefix(redis.url, prefix)]);
    });

    const ready = async () => (await request(server.url, "GET", "/readyz")).status === 200;
    const unready = async () => (await request(server.url, "GET", "/readyz")).status === 503;
    const send = (to: string, ip: string) =>
      request(server.url, "POST", "/v1/verifications", {
        body: { channel: "email", to, purpose: "sign_in" },
        ip,
      });
    const expectUnavailable = (reply: HttpReply) => {
      expect(reply.status).toBe(503);
      expect(reply.contentType).toContain("application/problem+json");
      expect(reply.body).toMatchObject({ status: 503, code: "STORE_UNAVAILABLE" });
    };

    it("answers 503 while Redis is cut, issues nothing, and recovers by itself", async () => {
      expect(await ready()).toBe(true);
      redisProxy.cut();
      expect(await eventually(unready)).toBe(true);
      expectUnavailable(await send("redis-cut@example.com", "10.200.1.1"));
      expect(server.alive(), server.output()).toBe(true);

      redisProxy.restore();
      expect(await eventually(ready, RECOVERY_MS)).toBe(true);
      // Nothing was counted while Redis was away: the same recipient may send at once.
      expect((await send("redis-cut@example.com", "10.200.1.1")).status).toBe(201);
    });

    it("answers 503 while PostgreSQL is cut, withdraws the code and refunds its limits, and recovers", async () => {
      expect(await ready()).toBe(true);
      // A send just before the cut puts the app in the 5-s app cache, so the send during the cut
      // gets past the app lookup to the seam: the Redis round trip succeeds, the commit fails.
      expect((await send("pg-warm@example.com", "10.200.2.2")).status).toBe(201);
      postgresProxy.cut();
      expect(await eventually(unready)).toBe(true);
      // Redis counts the send, the outbox commit fails, the code is withdrawn and the counters
      // refunded: the caller gets a 503, and no code exists without its queued message.
      expectUnavailable(await send("pg-cut@example.com", "10.200.2.1"));
      expect(server.alive(), server.output()).toBe(true);
      // The send was undone: its counters refunded, and with them the windows it opened (a later
      // send starts its own), and no code is left under the recipient's slot (keyed by its tag),
      // nor any displaced code.
      const app = `${prefix}{default}:`;
      expect(await inspect.exists(`${app}n:r:email:pg-cut@example.com:60`)).toBe(0);
      const [tag] = new CodeSecrets([secret]).slotTags(
        "default",
        slotKey("email", "pg-cut@example.com", "sign_in"),
      );
      expect(await inspect.exists(`${app}s:${tag}`)).toBe(0);
      expect(await inspect.keys(`${app}c:*`)).toEqual([]);
      // The send before the cut left its code, under its own slot's tag: the check above looks there.
      const [warm] = new CodeSecrets([secret]).slotTags(
        "default",
        slotKey("email", "pg-warm@example.com", "sign_in"),
      );
      expect(await inspect.exists(`${app}s:${warm}`)).toBe(1);

      postgresProxy.restore();
      expect(await eventually(ready, RECOVERY_MS)).toBe(true);
      // Refunded: the recipient's 1-per-60-s rule does not refuse the send after recovery.
      expect((await send("pg-cut@example.com", "10.200.2.1")).status).toBe(201);
    });

    it("never crashed", () => {
      expect(server.alive(), server.output()).toBe(true);
    });
  });
}
