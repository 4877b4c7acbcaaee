import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { eventually, killAll, startServer, type VerifydServer } from "../e2e/verifyd-process.js";
import { startWebhookReceiver, type WebhookReceiver } from "./webhook-receiver.js";

/**
 * Issue 7 "never lose a committed message across crashes": the real server (`node dist/main.js`)
 * delivers SMS through a webhook provider to a gateway in this process; it is SIGKILLed while
 * deliveries are in flight and restarted on the same data dir. Every accepted message must arrive;
 * duplicates are counted and reported (delivery is at-least-once: a message the gateway received
 * but whose answer died with the process is sent again, with the same Idempotency-Key).
 */

const SECRET = "crash-test-secret-0123456789";
const MESSAGES = 1_000;
const SEND_CONCURRENCY = 50;

const dirs: string[] = [];
let receiver: WebhookReceiver | undefined;
afterEach(async () => {
  await killAll();
  await receiver?.close();
  receiver = undefined;
});
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function setup(gateway: WebhookReceiver, path: string): { dir: string; env: Record<string, string> } {
  const dir = mkdtempSync(join(tmpdir(), "verifyd-crash-"));
  dirs.push(dir);
  return { dir, env: environment(dir, gateway, path) };
}

/** One process's environment; each may name its own gateway path to tell the senders apart. */
function environment(dir: string, gateway: WebhookReceiver, path: string): Record<string, string> {
  const config = join(dir, `verifyd${path.replaceAll("/", "-")}.json`);
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
        { id: "gateway", type: "webhook", url: `${gateway.url}${path}`, secret: "whsec_crash_0123456789" },
      ],
    }),
  );
  return {
    VERIFYD_DATA_DIR: dir,
    VERIFYD_SECRET: SECRET,
    VERIFYD_CONFIG: config,
    VERIFYD_TRUST_PROXY: "127.0.0.1",
  };
}

const phone = (i: number) => `+86138${String(i).padStart(8, "0")}`;
/** A distinct client address per request, so no per-IP or per-subnet rule is involved. */
const clientAddress = (i: number) => `10.${(i >> 8) & 255}.${i & 255}.1`;

/** Sends MESSAGES codes to distinct numbers, `SEND_CONCURRENCY` at a time, spread over `servers`. */
async function sendAll(servers: VerifydServer[]): Promise<number[]> {
  const statuses: number[] = [];
  let next = 0;
  const lane = async () => {
    for (let i = next++; i < MESSAGES; i = next++) {
      const server = servers[i % servers.length] as VerifydServer;
      const response = await fetch(`${server.url}/v1/verifications`, {
        method: "POST",
        headers: { "content-type": "application/json", "x-forwarded-for": clientAddress(i) },
        body: JSON.stringify({ channel: "sms", to: phone(i), purpose: "sign_in" }),
      });
      await response.arrayBuffer();
      statuses.push(response.status);
    }
  };
  await Promise.all(Array.from({ length: SEND_CONCURRENCY }, lane));
  return statuses;
}

function outboxCounts(dir: string): Record<string, number> {
  const db = new Database(join(dir, "verifyd.db"), { readonly: true });
  try {
    const rows = db.prepare("SELECT status, count(*) AS n FROM outbox GROUP BY status").all() as {
      status: string;
      n: number;
    }[];
    return Object.fromEntries(rows.map((row) => [row.status, row.n]));
  } finally {
    db.close();
  }
}

const duplicates = (counts: Map<string, number>) => [...counts.values()].filter((n) => n > 1).length;

describe("delivery across SIGKILL", () => {
  it(`delivers all ${MESSAGES} accepted messages after a crash mid-delivery`, async () => {
    // The gateway answers slowly at first (at most ~400 messages/s with the worker's 200 in
    // flight), so the accepted messages are still being delivered when the process dies.
    receiver = await startWebhookReceiver(500);
    const gateway = receiver;
    // The default lease (30 s) outlasts the 20 s this test waits after the restart: the messages
    // the killed process had claimed go out because the restarted server takes them back at once.
    const { dir, env } = setup(gateway, "/sms");
    let server = await startServer(env);

    const statuses = await sendAll([server]);
    expect(statuses.filter((status) => status === 201)).toHaveLength(MESSAGES);
    expect((await server.stop("SIGKILL")).signal).toBe("SIGKILL");
    // Counted once the process is gone and the gateway has read what was still in its sockets:
    // what reached the gateway, and what it answered in time.
    await new Promise((resolve) => setTimeout(resolve, 200));
    const acknowledgedBeforeKill = gateway.acknowledged.size;
    const receivedBeforeKill = gateway.received.size;
    // killed mid-delivery: some but not all were delivered
    expect(acknowledgedBeforeKill).toBeLessThan(MESSAGES);

    gateway.latencyMs = 2;
    server = await startServer(env);
    await eventually(
      async () => (outboxCounts(dir).sent === MESSAGES ? true : undefined),
      20_000,
      "every accepted message to be delivered after the restart",
    );
    await server.stop("SIGTERM");

    const receivedTwice = duplicates(gateway.received);
    const acknowledgedTwice = duplicates(gateway.acknowledged);
    console.info(
      `crash test: ${MESSAGES} accepted; before SIGKILL ${receivedBeforeKill} received by the gateway, ${acknowledgedBeforeKill} acknowledged; ` +
        `after restart ${gateway.received.size} distinct delivered; duplicates: ${receivedTwice} received twice ` +
        `(in flight at the kill), ${acknowledgedTwice} acknowledged twice; a gateway that honours Idempotency-Key sees 0`,
    );
    expect(gateway.received.size).toBe(MESSAGES);
    expect(outboxCounts(dir)).toEqual({ sent: MESSAGES });
    // A duplicate is only ever a message in flight at the kill (received, unanswered), or one
    // answered whose commit the kill cut off.
    expect(receivedTwice).toBeLessThanOrEqual(
      receivedBeforeKill - acknowledgedBeforeKill + acknowledgedTwice,
    );
  });

  it("a second server on a data dir one serves exits at once, and the first delivers everything once", async () => {
    // The embedded store counts on being its file's only writer (its limits' caches read memory),
    // so a second server would let the first's limits through: it refuses to start instead.
    receiver = await startWebhookReceiver(2);
    const gateway = receiver;
    const { dir, env } = setup(gateway, "/a");
    const first = await startServer(env);
    await expect(startServer({ ...environment(dir, gateway, "/b") })).rejects.toThrow(
      "is in use by another verifyd server",
    );
    const statuses = await sendAll([first]);
    expect(statuses.filter((status) => status === 201)).toHaveLength(MESSAGES);
    await eventually(
      async () => (outboxCounts(dir).sent === MESSAGES ? true : undefined),
      20_000,
      "every message to be delivered",
    );
    expect(gateway.received.size).toBe(MESSAGES);
    expect(duplicates(gateway.received)).toBe(0);
  });
});
