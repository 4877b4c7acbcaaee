// The cluster scenarios of `npm run bench`: one verifyd in cluster mode on the local Redis +
// PostgreSQL (a fresh schema and key prefix, dropped afterwards), loaded with wrk or autocannon
// (LOAD_GENERATOR in lib.mjs): sends to unique recipients, then checks of the codes those sends
// delivered, each in slices beside slices of the /healthz baseline (see `paired` in lib.mjs) and
// reported as a ratio to them. It also counts the Redis round trips of a send by watching MONITOR
// during a sample of sends (goal: 1), and where a send's CPU goes across the server, PostgreSQL,
// Redis and wrk (bench/cpu-shares.mjs), which bounds its ratio on this machine. Run: `node scripts/build-if-needed.mjs && node
// bench/cluster.mjs`; BENCH_REDIS_URL / BENCH_DATABASE_URL override the local services.
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import pg from "pg";
import { cpuShares, processesNamed } from "./cpu-shares.mjs";
import {
  baselineOf,
  checkAt,
  LOAD_GENERATOR,
  paired,
  printTable,
  sendRequest,
  startVerifyd,
} from "./lib.mjs";

const REDIS_URL =
  process.env.BENCH_REDIS_URL ?? process.env.VERIFYD_TEST_REDIS_URL ?? "redis://127.0.0.1:6379";
const DATABASE_URL =
  process.env.BENCH_DATABASE_URL ??
  process.env.VERIFYD_TEST_DATABASE_URL ??
  "postgres://postgres@127.0.0.1:5432/test";
// Sends watched on MONITOR to count round trips; sequential, so each one's commands are its own.
const ROUND_TRIP_SAMPLE = 20;
const MAX_CHECKS = 30_000;

const run_id = randomBytes(4).toString("hex");
const dataDir = mkdtempSync(join(tmpdir(), "verifyd-bench-cluster-"));
const schema = `vdbench_${run_id}`;
const prefix = `vdbench:${run_id}:`;

const send = (i, to) => sendRequest(i, { channel: "email", to, purpose: "sign_in" });

// Sends from addresses none of the paired scenarios used (theirs start at 11.), each in a /24 of
// its own so the subnet rules stay quiet too.
const SHARES_SEND_SCRIPT = `
local n = 0
request = function()
  n = n + 1
  local from = (100 + math.floor(n / 65536)) .. "." .. (math.floor(n / 256) % 256) .. "." .. (n % 256) .. ".1"
  return wrk.format("POST", "/v1/verifications",
    { ["content-type"] = "application/json", ["x-forwarded-for"] = from },
    '{"channel":"email","to":"shares-${run_id}-' .. n .. '@example.com","purpose":"sign_in"}')
end`;
const SHARES_SECONDS = 5;
const isLocal = (url) => ["127.0.0.1", "localhost", "[::1]"].includes(new URL(url).hostname);

/**
 * The CPU of a baseline request and of a send over every process that serves it (the server, the
 * local PostgreSQL and Redis, wrk): their sums' ratio is the most the send's ratio can reach on
 * this machine, however its work were spread. Only with wrk and backends on this machine.
 */
function machineBound(server) {
  if (LOAD_GENERATOR !== "wrk" || !isLocal(REDIS_URL) || !isLocal(DATABASE_URL)) return null;
  const groups = {
    server: () => [server.child.pid],
    PostgreSQL: () => processesNamed("postgres"),
    Redis: () => processesNamed("redis-server"),
  };
  const run = (script) =>
    cpuShares({ base: server.base, script, seconds: SHARES_SECONDS, dir: dataDir, groups });
  const baseline = run('request = function() return wrk.format("GET", "/healthz") end');
  const send = run(SHARES_SEND_SCRIPT);
  return { baseline, send };
}

function printMachineBound({ baseline, send }) {
  const total = (shares) => Object.values(shares).reduce((sum, value) => sum + value, 0);
  const names = Object.keys(send.shares);
  console.log(`\nCPU a request, µs, over every process serving it (wrk -c50, ${SHARES_SECONDS} s each):`);
  console.log(`| scenario | ${names.join(" | ")} | machine |`);
  console.log(`|---|${names.map(() => "---:").join("|")}|---:|`);
  for (const [name, result] of [
    ["baseline GET /healthz", baseline],
    ["cluster send", send],
  ]) {
    const values = names.map((each) => result.shares[each].toFixed(1));
    const flag = result.unexpected > 0 ? ` (${result.unexpected} unexpected answers)` : "";
    console.log(`| ${name}${flag} | ${values.join(" | ")} | ${total(result.shares).toFixed(1)} |`);
  }
  console.log(
    `Machine bound of a cluster send: ${(total(baseline.shares) / total(send.shares)).toFixed(2)}x the baseline (the most its ratio can reach on this machine)`,
  );
}

/** Round trips per send: top-level commands naming our prefix, seen on MONITOR (Lua's own calls are tagged "lua"). */
async function redisRoundTripsPerSend(base) {
  // monitor() opens a second connection in monitor mode; both are closed below.
  const source = new Redis(REDIS_URL);
  const monitor = await source.monitor();
  let commands = 0;
  monitor.on("monitor", (_time, args, source) => {
    if (!source.includes("lua") && args.some((arg) => String(arg).startsWith(prefix))) commands += 1;
  });
  for (let i = 0; i < ROUND_TRIP_SAMPLE; i++) {
    const { method, path, headers, body } = send(5_000_000 + i, `rtt-${i}@example.com`);
    const reply = await fetch(`${base}${path}`, { method, headers, body });
    if (reply.status !== 201) throw new Error(`round-trip sample: send answered ${reply.status}`);
  }
  await new Promise((resolve) => setTimeout(resolve, 300));
  monitor.disconnect();
  source.disconnect();
  return commands / ROUND_TRIP_SAMPLE;
}

async function main() {
  const server = await startVerifyd(
    {
      VERIFYD_DATA_DIR: dataDir,
      VERIFYD_REDIS_URL: REDIS_URL,
      VERIFYD_DATABASE_URL: DATABASE_URL,
      VERIFYD_DATABASE_SCHEMA: schema,
      VERIFYD_REDIS_PREFIX: prefix,
      VERIFYD_DATABASE_POOL_SIZE: process.env.BENCH_POOL_SIZE ?? "10",
    },
    "/readyz",
  );
  const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 2 });
  const results = [];
  let roundTrips;
  let bound = null;
  try {
    roundTrips = await redisRoundTripsPerSend(server.base);
    const baseline = {
      name: "baseline GET /healthz",
      base: server.base,
      request: { path: "/healthz" },
      expectedStatus: 200,
    };
    results.push(
      await paired(baseline, {
        name: "cluster send (unique recipients)",
        base: server.base,
        requestAt: (i) => send(i, `bench-${run_id}-${i}@example.com`),
        expectedStatus: 201,
      }),
    );
    console.error(`done: ${results.at(-1).name}`);

    // The codes the sends delivered, read from the dev inbox (dev mode keeps them there).
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    const { rows: pairs } = await pool.query(
      `SELECT o.verification_id AS id, d.code AS code FROM ${schema}.dev_inbox d
       JOIN ${schema}.outbox o ON o.id = d.id WHERE d.recipient LIKE 'bench-%' LIMIT ${MAX_CHECKS}`,
    );
    if (pairs.length === 0) console.error("no delivered codes to check: the check scenario is skipped");
    else {
      results.push(
        await paired(baseline, {
          name: `cluster check (right code, ${pairs.length} codes)`,
          amount: pairs.length,
          base: server.base,
          requestAt: checkAt(pairs),
          expectedStatus: 200,
        }),
      );
      console.error(`done: ${results.at(-1).name}`);
    }
    results.unshift(baselineOf(baseline.name, results));
    bound = machineBound(server);
  } finally {
    if (server.child.exitCode === null && server.child.signalCode === null) {
      const exited = new Promise((resolve) => server.child.once("exit", resolve));
      server.child.kill("SIGTERM");
      await exited;
    }
    rmSync(dataDir, { recursive: true, force: true });
    await pool.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`).catch(() => {});
    await pool.end();
    const redis = new Redis(REDIS_URL);
    let cursor = "0";
    do {
      const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 5000);
      cursor = next;
      if (keys.length > 0) await redis.unlink(...keys);
    } while (cursor !== "0");
    redis.disconnect();
  }

  printTable("verifyd cluster bench", results);
  console.log(
    `\nRedis round trips per send: ${roundTrips.toFixed(2)} (goal 1; MONITOR over ${ROUND_TRIP_SAMPLE} sends)`,
  );
  if (bound) printMachineBound(bound);
}

await main();
