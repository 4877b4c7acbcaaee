// What the bench scripts share: a free port, a verifyd process, a load slice (wrk or autocannon),
// the table.
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
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

/**
 * The load generator: `wrk` (Debian's package) where it is installed, else autocannon; BENCH_LOAD
 * picks one. The rule is "autocannon, or wrk above ~30k req/s", and the baseline runs above
 * it here: autocannon, in node on the same two cores, then spends as much CPU per request as the
 * server (measured: 17-20 µs a /healthz, 31-37 µs a captcha refusal) and becomes the limit it
 * measures. A pair's baseline and scenario slices always use the same generator.
 */
export const LOAD_GENERATOR = process.env.BENCH_LOAD ?? (hasWrk() ? "wrk" : "autocannon");

function hasWrk() {
  try {
    execFileSync("wrk", ["-v"], { stdio: "ignore" });
    return true;
  } catch (error) {
    // `wrk -v` prints its version and exits 1; only a missing binary is ENOENT
    return error.code !== "ENOENT";
  }
}

/**
 * One slice of a scenario (see `paired`): `seconds` long, or until `count` requests are made,
 * starting at the scenario's request `first`. Answers other than `expectedStatus`, and
 * connection errors, are counted as unexpected. `made` is how many requests were handed out, so
 * the next slice goes on after them.
 */
function runSlice(scenario, slice) {
  return LOAD_GENERATOR === "wrk" ? runWrk(scenario, slice) : runAutocannon(scenario, slice);
}

function runAutocannon(scenario, { seconds, first, count }) {
  let last = first - 1;
  const at = scenario.requestAt ?? (() => scenario.request);
  const options = {
    url: scenario.base,
    connections: CONNECTIONS,
    requests: [{ setupRequest: (request) => ({ ...request, ...at(++last) }) }],
    ...(count === undefined ? { duration: seconds } : { amount: count }),
  };
  return new Promise((resolve, reject) => {
    const statuses = new Map();
    const instance = autocannon(options, (error, result) => {
      if (error) return reject(error);
      resolve(
        sliceResult(scenario, {
          seconds: result.duration,
          p50: result.latency.p50,
          p99: result.latency.p99,
          total: result.requests.total,
          made: last - first + 1,
          errors: result.errors + result.timeouts,
          statuses: Object.fromEntries(statuses),
        }),
      );
    });
    instance.on("response", (_client, statusCode) =>
      statuses.set(statusCode, (statuses.get(statusCode) ?? 0) + 1),
    );
  });
}

// The Lua side of a wrk slice: its requests read from a file and formatted before the load starts
// (wrk's advice for a fast server), answers counted by status, a result line at the end. A slice
// that runs out of requests says so and stops; `runWrk` then ends the run at once (SIGINT), so a
// slice with a `count` lasts exactly as long as its requests.
const WRK_SCRIPT = String.raw`
local requests = {}
made = 0
extra = 0
statuses = {}
local exhausted = false

function init(args)
  for line in io.lines(args[1]) do
    local method, path, from, body = line:match("^(%u+)\t([^\t]*)\t([^\t]*)\t(.*)$")
    local headers = {}
    if from ~= "" then headers["x-forwarded-for"] = from end
    if body == "" then body = nil else headers["content-type"] = "application/json" end
    requests[#requests + 1] = wrk.format(method, path, headers, body)
  end
  repeating = args[2] == "repeat"
  -- wrk starts its clock right after this; its stdout is a pipe, so flushed by hand
  io.write("ready\n")
  io.flush()
end

function request()
  if repeating then
    made = made + 1
    return requests[1]
  end
  if made < #requests then
    made = made + 1
    return requests[made]
  end
  if not exhausted then
    exhausted = true
    io.write("exhausted\n")
    io.flush()
    wrk.thread:stop()
  end
  -- asked for one more before the stop takes effect: a /healthz, left out of the counts below
  return wrk.format("GET", "/healthz?after-the-slice")
end

function response(status, headers, body)
  if exhausted and body == '{"status":"ok"}' then
    extra = extra + 1
  else
    statuses[status] = (statuses[status] or 0) + 1
  end
end

local threads = {}
function setup(thread)
  threads[#threads + 1] = thread
end

function done(summary, latency)
  local thread = threads[1]
  local counts = {}
  for status, count in pairs(thread:get("statuses")) do
    counts[#counts + 1] = string.format('"%d":%d', status, count)
  end
  local e = summary.errors
  io.write(string.format(
    'result {"completed":%d,"us":%d,"p50":%d,"p99":%d,"made":%d,"extra":%d,"errors":%d,"statuses":{%s}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    thread:get("made"), thread:get("extra"), e.connect + e.read + e.write + e.timeout,
    table.concat(counts, ",")))
end
`;

// Requests written for a timed slice: enough for this rate, more than any scenario reaches here,
// or, once a slice of the scenario has run, for twice the fastest rate it reached (a slice that
// runs out ends early, its rate still true).
const WRK_MAX_RATE = 80_000;
const fastestRate = new WeakMap();

async function runWrk(scenario, { seconds, first, count }) {
  const dir = mkdtempSync(join(tmpdir(), "verifyd-wrk-"));
  try {
    const script = join(dir, "slice.lua");
    const requestsFile = join(dir, "requests.tsv");
    writeFileSync(script, WRK_SCRIPT);
    const lines =
      scenario.requestAt === undefined
        ? [wrkLine(scenario.request)]
        : Array.from({ length: count ?? Math.ceil(ratePlanned(scenario) * seconds) }, (_, k) =>
            wrkLine(scenario.requestAt(first + k)),
          );
    writeFileSync(requestsFile, `${lines.join("\n")}\n`);
    // wrk takes whole seconds, so the slice is ended by a SIGINT: `seconds` after the script says
    // it is ready (its requests formatted), or when a counted slice's requests run out.
    // wrk's own duration only bounds the run; the one it reports is the real one.
    const bound = count === undefined ? Math.ceil(seconds) + 5 : 600;
    const args = ["-t1", `-c${CONNECTIONS}`, `-d${bound}s`, "--timeout", "10s", "-s", script, scenario.base];
    args.push("--", requestsFile, scenario.requestAt === undefined ? "repeat" : "list");
    const output = await new Promise((resolve, reject) => {
      const child = spawn("wrk", args, { stdio: ["ignore", "pipe", "inherit"] });
      const stop = () => child.exitCode === null && child.kill("SIGINT");
      let text = "";
      let timer;
      child.stdout.on("data", (chunk) => {
        const waiting = !text.includes("ready\n");
        text += chunk;
        if (count === undefined && waiting && text.includes("ready\n"))
          timer = setTimeout(stop, seconds * 1000);
        if (text.includes("exhausted\n")) stop();
      });
      child.on("error", reject);
      child.on("close", (code) => {
        clearTimeout(timer);
        code === 0 ? resolve(text) : reject(new Error(`wrk exited with ${code}: ${text}`));
      });
    });
    const line = output.split("\n").find((l) => l.startsWith("result "));
    if (!line) throw new Error(`wrk printed no result: ${output}`);
    const r = JSON.parse(line.slice("result ".length));
    const result = sliceResult(scenario, {
      seconds: r.us / 1e6,
      p50: Math.round(r.p50 / 100) / 10,
      p99: Math.round(r.p99 / 100) / 10,
      total: r.completed - r.extra,
      made: r.made,
      errors: r.errors,
      statuses: r.statuses,
    });
    fastestRate.set(scenario, Math.max(fastestRate.get(scenario) ?? 0, result.requestsPerSecond));
    return result;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function ratePlanned(scenario) {
  const fastest = fastestRate.get(scenario);
  return fastest === undefined ? WRK_MAX_RATE : Math.min(WRK_MAX_RATE, Math.max(2 * fastest, 5_000));
}

/** A request as one line of the file a wrk slice reads: method, path, client address, JSON body. */
function wrkLine({ method = "GET", path, headers = {}, body = "" }) {
  const unsupported = Object.keys(headers).filter((h) => h !== "content-type" && h !== "x-forwarded-for");
  if (unsupported.length > 0) throw new Error(`wrk slices send no ${unsupported.join(", ")} header`);
  if (/[\t\n]/.test(path + body)) throw new Error("a request line cannot hold a tab or a newline");
  return `${method}\t${path}\t${headers["x-forwarded-for"] ?? ""}\t${body}`;
}

function sliceResult(scenario, { errors, statuses, ...measured }) {
  const unexpected = Object.entries(statuses)
    .filter(([status]) => Number(status) !== scenario.expectedStatus)
    .reduce((n, [, c]) => n + c, 0);
  return {
    name: scenario.name,
    requestsPerSecond: measured.total / measured.seconds,
    ...measured,
    unexpected: unexpected + errors,
    statuses,
  };
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
 * The i-th check (from 1) of a scenario that checks each `{ id, code }` pair once, from a distinct
 * client address per check.
 */
export function checkAt(pairs) {
  return (i) => ({
    method: "POST",
    path: "/v1/verifications/check",
    headers: { "content-type": "application/json", "x-forwarded-for": clientAddress(i) },
    body: JSON.stringify(pairs[(i - 1) % pairs.length]),
  });
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

// Seconds of each side of a pair run before its measured slices (see `paired`).
const WARMUP_SECONDS = Number(process.env.BENCH_WARMUP ?? 1);

// A scenario runs in this many slices, each right after a slice of the baseline (see `paired`).
export const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);

/**
 * Runs `scenario` in ROUNDS slices, each right after a slice of `baseline`, and reports it against
 * those baseline slices. This shared machine's speed drifts within seconds (the same build's
 * /healthz measured 21k and 38k req/s a minute apart), so a baseline measured minutes before a
 * scenario says little about it; slices taken side by side share the machine's mood.
 * A scenario is `{ name, base, expectedStatus, request | requestAt, amount? }`: `request` is sent
 * again and again; `requestAt(i)` gives the i-th request (from 1), each `{ method, path, headers,
 * body }`, and its numbering goes on across the slices, so unique recipients stay unique.
 * `amount`, when given, is the scenario's total number of requests, split across the slices.
 */
export async function paired(baseline, scenario) {
  const baselineSlices = [];
  const scenarioSlices = [];
  const seconds = DURATION_SECONDS / ROUNDS;
  // Unmeasured first: a fresh process's first second is JIT compilation and cold pages, which put
  // a stall of 50-200 ms into whichever slice came first. A counted scenario warms up on a few of
  // its requests.
  await runSlice(baseline, { seconds: WARMUP_SECONDS, first: 1 });
  const warmCount =
    scenario.amount === undefined ? undefined : Math.min(2_000, Math.floor(scenario.amount / 20));
  let first = 1;
  if (warmCount !== 0) {
    const warm = await runSlice(scenario, { seconds: WARMUP_SECONDS, first, count: warmCount });
    first += warmCount ?? warm.made;
  }
  const amount = scenario.amount === undefined ? undefined : scenario.amount - warmCount;
  for (let round = 0; round < ROUNDS; round++) {
    baselineSlices.push(await runSlice(baseline, { seconds, first: 1 }));
    const count = amount === undefined ? undefined : share(amount, round + 1) - share(amount, round);
    const slice = await runSlice(scenario, { seconds, first, count });
    scenarioSlices.push(slice);
    first += count ?? slice.made;
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
    `\n${title}: ${CONNECTIONS} connections, ${DURATION_SECONDS} s per scenario in ${ROUNDS} slices each beside a baseline slice, load from ${LOAD_GENERATOR}, node ${process.version}`,
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
