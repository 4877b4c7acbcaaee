import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
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
import {
  codeFor,
  distinctIp,
  eventually,
  type HttpReply,
  request,
  type ServerProcess,
  startServerProcess,
} from "./processes.js";

/**
 * Redis faults a cut does not show (cluster-faults.test.ts cuts): a connection that goes silent,
 * and a send whose issue script ran in Redis but whose reply was lost or came too late. The
 * server reaches Redis through a loopback proxy this test controls, PostgreSQL directly.
 */
const [redis, postgres] = await Promise.all([probeRedis(), probePostgres()]);

// A silent connection is given up 2 s after a command went unanswered (REDIS_SOCKET_TIMEOUT_MS),
// and a new one is made within 50 ms: recovery well inside this, not the kernel's ~15 minutes.
const SILENT_RECOVERY_MS = 6_000;
// A withdraw that waits for Redis is retried from 100 ms on.
const WITHDRAW_MS = 5_000;

if (!redis.ok || !postgres.ok) {
  backendMissing("cluster: Redis silent, replies lost or late", missingReason(redis, postgres));
} else {
  describe("cluster: Redis silent, replies lost or late", () => {
    const schema = uniqueName("redisfaults");
    const prefix = `${uniqueName("redisfaults")}:`;
    const configDir = mkdtempSync(join(tmpdir(), "verifyd-redis-faults-"));
    let proxy: TcpProxy;
    let server: ServerProcess;

    beforeAll(async () => {
      // A resend within the minute is what this is about: two sends per recipient per 60 s, so a
      // third is refused unless the failed one between them was refunded.
      const config = join(configDir, "config.json");
      writeFileSync(
        config,
        JSON.stringify({
          apps: [{ id: "default", policy: { perRecipient: [{ limit: 2, windowSeconds: 60 }] } }],
        }),
      );
      proxy = await startTcpProxy(backendAddress(redis.url, 6379));
      server = await startServerProcess({
        VERIFYD_REDIS_URL: throughProxy(redis.url, proxy.port),
        VERIFYD_DATABASE_URL: postgres.url,
        VERIFYD_DATABASE_SCHEMA: schema,
        VERIFYD_REDIS_PREFIX: prefix,
        VERIFYD_SECRET: randomBytes(24).toString("base64url"),
        VERIFYD_TRUST_PROXY: "127.0.0.1",
        VERIFYD_CONFIG: config,
        // Errors are expected here; keep the output for a failure message only.
        VERIFYD_LOG_LEVEL: "error",
      });
    });
    afterAll(async () => {
      await server?.stop();
      await proxy?.close();
      rmSync(configDir, { recursive: true, force: true });
      await Promise.all([dropSchema(postgres.url, schema), deleteRedisPrefix(redis.url, prefix)]);
    });

    const readyz = async () => (await request(server.url, "GET", "/readyz")).status;
    const send = (to: string, idempotencyKey?: string) =>
      request(server.url, "POST", "/v1/verifications", {
        body: { channel: "email", to, purpose: "sign_in" },
        ip: distinctIp(),
        ...(idempotencyKey ? { headers: { "idempotency-key": idempotencyKey } } : {}),
      });
    const status = async (id: unknown) =>
      (await request(server.url, "GET", `/v1/verifications/${String(id)}`)).body.status;
    const expectUnavailable = (reply: HttpReply) => {
      expect(reply.status).toBe(503);
      expect(reply.body).toMatchObject({ status: 503, code: "STORE_UNAVAILABLE" });
    };

    // Regression: the send answered 503, yet its code superseded the one the user had received
    // (410 CODE_SUPERSEDED), its counters stayed spent (the retry got 429) and its key answered
    // "still being committed" for 30 s. @see .scratch/cluster/redis-lost-reply.mjs
    it("gives the delivered code back when a resend's Redis reply is lost, refunds the resend and frees its key", async () => {
      const to = "lost-reply@example.com";
      const first = await send(to);
      expect(first.status).toBe(201);
      const code = await codeFor(server.url, to);
      // The issue script runs in Redis; its connection drops before the reply gets back.
      proxy.loseReplyTo(`n:r:email:${to}:`);
      expectUnavailable(await send(to, "lost-reply-key"));

      expect(await eventually(async () => (await status(first.body.id)) === "pending", WITHDRAW_MS)).toBe(
        true,
      );
      const check = await request(server.url, "POST", "/v1/verifications/check", {
        body: { id: first.body.id, code },
        ip: distinctIp(),
      });
      expect(check.status).toBe(200);
      // Refunded, and the key is free: the retry is a new send, the recipient's second of the minute.
      const retry = await send(to, "lost-reply-key");
      expect(retry.status, JSON.stringify(retry.body)).toBe(201);
      expect(retry.body.id).not.toBe(first.body.id);
    });

    // @see .scratch/cluster/redis-faults.mjs B4
    it("undoes a resend whose Redis reply came after the command timeout", async () => {
      const to = "late-reply@example.com";
      const first = await send(to);
      expect(first.status).toBe(201);
      proxy.delayReplies(1_500);
      expectUnavailable(await send(to));
      proxy.delayReplies(0);

      expect(await eventually(async () => (await status(first.body.id)) === "pending", WITHDRAW_MS)).toBe(
        true,
      );
      const retry = await send(to);
      expect(retry.status, JSON.stringify(retry.body)).toBe(201);
    });

    // Regression: only commands timed out; the silent socket stayed "connected", so every send
    // and /readyz answered 503 for as long as the kernel kept it (42 s and on in the repro).
    // @see .scratch/cluster/redis-faults.mjs B5
    it("replaces a Redis connection that went silent: sends and /readyz recover within seconds", async () => {
      expect(await readyz()).toBe(200);
      expect((await send("silent-before@example.com")).status).toBe(201);
      proxy.freeze();
      const frozenAt = Date.now();
      // /readyz keeps a probe's answer a second (storage/cluster/index.ts): the one before the
      // freeze serves until then, and the next probe's PING times out
      expect(await eventually(async () => (await readyz()) === 503, 3_000)).toBe(true);
      const recovered = await eventually(
        async () =>
          (await send(`silent-${Date.now()}@example.com`)).status === 201 && (await readyz()) === 200,
        SILENT_RECOVERY_MS,
      );
      expect(recovered, server.output()).toBe(true);
      expect(Date.now() - frozenAt).toBeLessThan(SILENT_RECOVERY_MS);
    });

    it("never crashed", () => {
      expect(server.alive(), server.output()).toBe(true);
    });
  });
}
