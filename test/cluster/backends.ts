import { randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import pg from "pg";
import { describe, it } from "vitest";

/**
 * Which external backends the tests may use. Unset URLs skip the Redis/PostgreSQL suites with a
 * printed reason (a fresh machine still passes `npm test`); with VERIFYD_TEST_REQUIRE_BACKENDS=1
 * (.ci/run) an unset or unreachable backend FAILS instead, so CI never silently skips them.
 */
export const REQUIRE_BACKENDS = process.env.VERIFYD_TEST_REQUIRE_BACKENDS === "1";

export type Probe = { ok: true; url: string } | { ok: false; reason: string };

// A local backend answers in milliseconds; a second is plenty and keeps a skip quick.
const PROBE_TIMEOUT_MS = 1_000;

export async function probeRedis(): Promise<Probe> {
  const url = process.env.VERIFYD_TEST_REDIS_URL;
  if (!url) return { ok: false, reason: "VERIFYD_TEST_REDIS_URL is not set" };
  const redis = new Redis(url, {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    connectTimeout: PROBE_TIMEOUT_MS,
    retryStrategy: () => null,
  });
  redis.on("error", () => {});
  try {
    await redis.connect();
    await redis.ping();
    return { ok: true, url };
  } catch (error) {
    return { ok: false, reason: `Redis at ${url} is unreachable: ${(error as Error).message}` };
  } finally {
    redis.disconnect();
  }
}

export async function probePostgres(): Promise<Probe> {
  const url = process.env.VERIFYD_TEST_DATABASE_URL;
  if (!url) return { ok: false, reason: "VERIFYD_TEST_DATABASE_URL is not set" };
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: PROBE_TIMEOUT_MS });
  client.on("error", () => {});
  try {
    await client.connect();
    await client.query("SELECT 1");
    return { ok: true, url };
  } catch (error) {
    return { ok: false, reason: `PostgreSQL at ${url} is unreachable: ${(error as Error).message}` };
  } finally {
    await client.end().catch(() => {});
  }
}

/**
 * Registers what stands in for a suite whose backend is missing: a skipped suite naming the reason
 * (printed too), or, when backends are required, a failing test naming it.
 */
export function backendMissing(suite: string, reason: string): void {
  if (REQUIRE_BACKENDS) {
    describe(suite, () => {
      it("reaches its backend (VERIFYD_TEST_REQUIRE_BACKENDS=1)", () => {
        throw new Error(reason);
      });
    });
    return;
  }
  console.warn(`[skipped] ${suite}: ${reason}`);
  describe.skip(`${suite} (skipped: ${reason})`, () => {
    it("needs its backend", () => {});
  });
}

/** Why the first of these probes failed ("" when none did). */
export function missingReason(...probes: Probe[]): string {
  for (const probe of probes) if (!probe.ok) return probe.reason;
  return "";
}

/** A name no other test run (or parallel test file) uses: schema names and key prefixes. */
export function uniqueName(label: string): string {
  return `vdtest_${label}_${process.pid}_${randomBytes(4).toString("hex")}`;
}

/** Drops a test schema and everything in it. */
export async function dropSchema(url: string, schema: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  client.on("error", () => {});
  await client.connect();
  try {
    await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  } finally {
    await client.end();
  }
}

/** Deletes every key under a test prefix. */
export async function deleteRedisPrefix(url: string, prefix: string): Promise<void> {
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  redis.on("error", () => {});
  await redis.connect();
  try {
    let cursor = "0";
    do {
      const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 1000);
      cursor = next;
      if (keys.length > 0) await redis.unlink(...keys);
    } while (cursor !== "0");
  } finally {
    redis.disconnect();
  }
}

/** Where a backend URL points (for a proxy in front of it). */
export function backendAddress(url: string, defaultPort: number): { host: string; port: number } {
  const parsed = new URL(url);
  return { host: parsed.hostname || "127.0.0.1", port: Number(parsed.port || defaultPort) };
}

/** The same backend URL, through a loopback proxy on `port`. */
export function throughProxy(url: string, port: number): string {
  const parsed = new URL(url);
  parsed.hostname = "127.0.0.1";
  parsed.port = String(port);
  return parsed.toString();
}
