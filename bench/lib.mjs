// What the bench scripts share: a free port, a verifyd process, an autocannon scenario, the table.
import { spawn } from "node:child_process";
import { createServer } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import autocannon from "autocannon";

export const root = fileURLToPath(new URL("..", import.meta.url));
export const DURATION_SECONDS = Number(process.env.BENCH_DURATION ?? 10);
export const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 50);

export async function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
    server.on("error", reject);
  });
}

/** A distinct client address per request, each in its own /24 so subnet rules stay quiet too. */
export function clientAddress(i) {
  return `${11 + ((i >> 16) % 200)}.${(i >> 8) & 255}.${i & 255}.1`;
}

/** Starts `dist/main.js` with `env` on a free port; resolves once `readyPath` answers. */
export async function startVerifyd(env, readyPath = "/healthz") {
  return startServer(process.env.BENCH_MAIN ?? join(root, "dist", "main.js"), env, readyPath);
}

/**
 * Starts the node `script` with `env` and VERIFYD_PORT set to a free port; resolves once `readyPath`
 * answers. With `cpu`, the process runs pinned to that CPU (`taskset`).
 */
export async function startServer(script, env, readyPath = "/healthz", { cpu } = {}) {
  const port = await freePort();
  const nodeArgs = process.env.BENCH_NODE_ARGS?.split(" ").filter(Boolean) ?? [];
  const command = [process.execPath, ...nodeArgs, script];
  if (cpu !== undefined) command.unshift("taskset", "-c", String(cpu));
  const child = spawn(command[0], command.slice(1), {
    env: {
      ...process.env,
      VERIFYD_PORT: String(port),
      VERIFYD_TRUST_PROXY: "127.0.0.1",
      VERIFYD_LOG_LEVEL: "warn",
      VERIFYD_SECRET: "bench-secret-bench-secret-bench-secret",
      ...env,
    },
    stdio: ["ignore", process.env.BENCH_SERVER_LOG ? "inherit" : "ignore", "inherit"],
  });
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 150; i++) {
    try {
      if ((await fetch(`${base}${readyPath}`)).ok) return { child, base };
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  child.kill("SIGKILL");
  throw new Error("server did not start");
}

/** One autocannon scenario; answers other than `expectedStatus` are counted as unexpected. */
function run(name, options, expectedStatus) {
  return new Promise((resolve, reject) => {
    const statuses = new Map();
    const instance = autocannon(
      { connections: CONNECTIONS, duration: DURATION_SECONDS, ...options },
      (error, result) => {
        if (error) return reject(error);
        const unexpected = [...statuses]
          .filter(([status]) => status !== expectedStatus)
          .reduce((n, [, c]) => n + c, 0);
        resolve({
          name,
          requestsPerSecond: result.requests.total / result.duration,
          seconds: result.duration,
          p50: result.latency.p50,
          p99: result.latency.p99,
          total: result.requests.total,
          unexpected: unexpected + result.errors + result.timeouts,
          statuses: Object.fromEntries(statuses),
        });
      },
    );
    instance.on("response", (_client, statusCode) =>
      statuses.set(statusCode, (statuses.get(statusCode) ?? 0) + 1),
    );
  });
}

/** A send request body and headers, from a distinct client address per `i`. */
export function sendRequest(i, body, address = clientAddress(i)) {
  return {
    method: "POST",
    path: "/v1/verifications",
    headers: { "content-type": "application/json", "x-forwarded-for": address },
    body: JSON.stringify(body),
  };
}

/**
 * A setupRequest that checks each `{ id, code }` pair in turn, from a distinct client address per
 * check; it goes on across the slices of a paired scenario.
 */
export function checksOf(pairs) {
  let i = 0;
  return (request) => {
    const pair = pairs[i++ % pairs.length];
    return {
      ...request,
      method: "POST",
      path: "/v1/verifications/check",
      headers: { "content-type": "application/json", "x-forwarded-for": clientAddress(i) },
      body: JSON.stringify(pair),
    };
  };
}

/**
 * A scattered but never repeated 32-bit value for each i (multiplying by an odd constant is a
 * bijection mod 2^32): recipients and addresses in no particular order, as real traffic has them.
 */
export function scattered(i) {
  return Math.imul(i, 0x9e3779b1) >>> 0;
}

/** A distinct client address per i, in no particular order (`scattered`); never 0.x or 224+. */
export function scatteredAddress(i) {
  const h = scattered(i);
  return `${1 + ((h >>> 24) % 223)}.${(h >>> 16) & 255}.${(h >>> 8) & 255}.${h & 255}`;
}

// A scenario runs in this many slices, each right after a slice of the baseline (see `paired`).
export const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);

/**
 * Runs `scenario` in ROUNDS slices, each right after a slice of `baseline`, and reports it against
 * those baseline slices. This shared machine's speed drifts within seconds (the same build's
 * /healthz measured 21k and 38k req/s a minute apart), so a baseline measured minutes before a
 * scenario says little about it; slices taken side by side share the machine's mood.
 * A scenario is `{ name, options, expectedStatus, amount? }`; its options (and the state their
 * setupRequest closes over) serve every slice, so a counter of unique recipients runs on.
 * `amount`, when given, is the scenario's total number of requests, split across the slices.
 */
export async function paired(baseline, scenario) {
  const baselineSlices = [];
  const scenarioSlices = [];
  const seconds = DURATION_SECONDS / ROUNDS;
  for (let round = 0; round < ROUNDS; round++) {
    baselineSlices.push(
      await run(baseline.name, { ...baseline.options, duration: seconds }, baseline.expectedStatus),
    );
    const slice =
      scenario.amount === undefined
        ? { duration: seconds }
        : { amount: share(scenario.amount, round + 1) - share(scenario.amount, round) };
    scenarioSlices.push(await run(scenario.name, { ...scenario.options, ...slice }, scenario.expectedStatus));
  }
  const beside = combine(baseline.name, baselineSlices);
  const result = combine(scenario.name, scenarioSlices);
  return { ...result, baselineBeside: beside.requestsPerSecond, baselineSlices };
}

/** The requests of `amount` that the first `rounds` slices make between them. */
function share(amount, rounds) {
  return Math.floor((amount * rounds) / ROUNDS);
}

/** One result from slices: req/s over their whole time, the median p50, the worst p99. */
function combine(name, slices) {
  const total = slices.reduce((n, slice) => n + slice.total, 0);
  const seconds = slices.reduce((n, slice) => n + slice.seconds, 0);
  const statuses = {};
  for (const slice of slices)
    for (const [status, count] of Object.entries(slice.statuses))
      statuses[status] = (statuses[status] ?? 0) + count;
  const p50s = slices.map((slice) => slice.p50).sort((a, b) => a - b);
  return {
    name,
    requestsPerSecond: total / seconds,
    seconds,
    p50: p50s[Math.floor(p50s.length / 2)],
    p99: Math.max(...slices.map((slice) => slice.p99)),
    total,
    unexpected: slices.reduce((n, slice) => n + slice.unexpected, 0),
    statuses,
  };
}

/** All the baseline slices of paired results as one baseline row. */
export function baselineOf(name, results) {
  return combine(
    name,
    results.flatMap((result) => result.baselineSlices),
  );
}

/**
 * Prints the results as a table of ratios: a paired result's to the baseline slices beside it,
 * any other's to the first row (the baseline); flags unexpected answers.
 */
export function printTable(title, results) {
  const baseline = results[0].requestsPerSecond;
  console.log(
    `\n${title}: ${CONNECTIONS} connections, ${DURATION_SECONDS} s per scenario in ${ROUNDS} slices each beside a baseline slice, node ${process.version}`,
  );
  console.log(
    "| scenario | req/s | p50 ms | p99 ms | unexpected answers | baseline beside it, req/s | ratio to baseline |",
  );
  console.log("|---|---:|---:|---:|---:|---:|---:|");
  for (const r of results) {
    const flag = r.unexpected > 0 ? ` (NOT A RESULT: ${JSON.stringify(r.statuses)})` : "";
    const against = r.baselineBeside ?? baseline;
    console.log(
      `| ${r.name} | ${Math.round(r.requestsPerSecond)} | ${r.p50} | ${r.p99} | ${r.unexpected}${flag} | ${r.baselineBeside === undefined ? "" : Math.round(against)} | ${(r.requestsPerSecond / against).toFixed(2)}x |`,
    );
  }
  if (results.some((r) => r.unexpected > 0)) process.exitCode = 1;
}
