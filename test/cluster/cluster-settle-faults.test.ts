import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startWebhookReceiver, type WebhookReceiver } from "../crash/webhook-receiver.js";
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
  distinctIp,
  eventually,
  request,
  type ServerProcess,
  sleep,
  startServerProcess,
} from "./processes.js";

/**
 * A PostgreSQL stall while the providers have the messages (issue: "a PostgreSQL hiccup during
 * delivery sends every in-flight message twice"). Two server processes reach PostgreSQL through a
 * loopback proxy this test cuts for 8 s while a webhook gateway in this process holds the sends
 * for 2 s. The outcomes the store refused are written again until it takes them, so no claim
 * lapses and no process sends a message a second time once the 30-s lease is over.
 */
const [redis, postgres] = await Promise.all([probeRedis(), probePostgres()]);

const MESSAGES = 6;
const GATEWAY_LATENCY_MS = 2_000;
const STALL_MS = 8_000;
// the default lease (delivery.leaseSeconds, 30 s at least), a poll and a gateway answer later
const PAST_THE_LEASE_MS = 30_000 + 1_000 + GATEWAY_LATENCY_MS + 2_000;

if (!redis.ok || !postgres.ok) {
  backendMissing("cluster: PostgreSQL stalled mid-send", missingReason(redis, postgres));
} else {
  describe("cluster: PostgreSQL stalled mid-send", () => {
    const schema = uniqueName("settle");
    const prefix = `${uniqueName("settle")}:`;
    const configDir = mkdtempSync(join(tmpdir(), "verifyd-settle-faults-"));
    let proxy: TcpProxy;
    let gateway: WebhookReceiver;
    let servers: ServerProcess[] = [];
    // Straight to PostgreSQL, past the proxy: what the servers committed.
    let inspect: pg.Client;

    beforeAll(async () => {
      proxy = await startTcpProxy(backendAddress(postgres.url, 5432));
      gateway = await startWebhookReceiver(GATEWAY_LATENCY_MS);
      const config = join(configDir, "config.json");
      writeFileSync(
        config,
        JSON.stringify({
          apps: [
            {
              id: "default",
              policy: { perIp: [] },
              abuse: { captcha: { native: "never" }, pumping: { safeList: ["+86138"] } },
            },
          ],
          providers: [
            { id: "gateway", type: "webhook", url: `${gateway.url}/sms`, secret: "whsec_settle_0123456789" },
          ],
        }),
      );
      const env = {
        VERIFYD_REDIS_URL: redis.url,
        VERIFYD_DATABASE_URL: throughProxy(postgres.url, proxy.port),
        VERIFYD_DATABASE_SCHEMA: schema,
        VERIFYD_REDIS_PREFIX: prefix,
        VERIFYD_SECRET: randomBytes(24).toString("base64url"),
        VERIFYD_TRUST_PROXY: "127.0.0.1",
        VERIFYD_CONFIG: config,
        VERIFYD_LOG_LEVEL: "info",
      };
      servers = await Promise.all([startServerProcess(env), startServerProcess(env)]);
      inspect = new pg.Client({ connectionString: postgres.url, options: `-c search_path=${schema}` });
      inspect.on("error", () => {});
      await inspect.connect();
    });
    afterAll(async () => {
      await Promise.all(servers.map((server) => server.stop()));
      await inspect?.end().catch(() => {});
      await Promise.all([gateway?.close(), proxy?.close()]);
      await Promise.all([dropSchema(postgres.url, schema), deleteRedisPrefix(redis.url, prefix)]);
      rmSync(configDir, { recursive: true, force: true });
    });

    const sentRows = async () =>
      (await inspect.query("SELECT count(*)::int AS n FROM outbox WHERE status = 'sent'")).rows[0]
        .n as number;

    // Regression: each process logged "delivery crashed" (`postgres: timeout exceeded when trying
    // to connect`) for the outcomes it could not record, and 30 s later another process sent all
    // six again: 12 POSTs, the first try recorded nowhere.
    it(
      "sends each message once and records its one try when PostgreSQL stalls while the gateway has it",
      async () => {
        const ids: string[] = [];
        for (let i = 0; i < MESSAGES; i++) {
          const sent = await request(servers[i % 2]?.url ?? "", "POST", "/v1/verifications", {
            body: { channel: "sms", to: `+861380013${String(i).padStart(4, "0")}`, purpose: "sign_in" },
            ip: distinctIp(),
          });
          expect(sent.status, JSON.stringify(sent.body)).toBe(201);
          ids.push(String(sent.body.id));
        }
        // every message is at the gateway, which answers in 2 s
        expect(await eventually(async () => gateway.received.size === MESSAGES, 10_000)).toBe(true);
        const claimedAtMs = Date.now();
        await sleep(500);
        proxy.cut();
        await sleep(STALL_MS);
        proxy.restore();
        // once the claims' lease is over, no process has sent any of them again
        await sleep(Math.max(0, claimedAtMs + PAST_THE_LEASE_MS - Date.now()));
        expect([...gateway.received.values()]).toEqual(Array(MESSAGES).fill(1));
        // their outcomes were recorded once PostgreSQL was back (each written again within 5 s)
        expect(await sentRows()).toBe(MESSAGES);
        for (const [index, id] of ids.entries()) {
          const view = await request(servers[index % 2]?.url ?? "", "GET", `/v1/verifications/${id}`);
          const deliveries = view.body.deliveries as { provider: string; status: string }[];
          expect(deliveries.map((delivery) => [delivery.provider, delivery.status])).toEqual([
            ["gateway", "sent"],
          ]);
        }
        const output = servers.map((server) => server.output()).join("");
        expect(output).not.toContain('"msg":"delivery crashed"');
        expect(output).toContain('"msg":"outbox settle failed"');
        expect(output).toContain('"msg":"outbox settle resumed"');
        expect(servers.every((server) => server.alive())).toBe(true);
      },
      PAST_THE_LEASE_MS + 30_000,
    );
  });
}
