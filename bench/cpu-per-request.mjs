// `node bench/cpu-per-request.mjs SCENARIO [BUILD ...]`: the server's main-thread CPU per request,
// for judging a change when the machine's noise swamps req/s (the same build's /healthz has run at
// 21k and 53k req/s within the hour here; its CPU per request moves a few percent).
//
// The server is pinned to CPU 0 and `wrk -t1 -c50` to CPU 1 (Debian's `wrk` and util-linux's
// `taskset`); the CPU time is read from /proc/<pid>/task/<pid>/stat around the load. Each round
// starts a fresh server per build, builds alternating: two servers side by side, or one process
// measured twice, showed biases of their own. SCENARIO is healthz, refused, captcha, send or check.
// A BUILD is a `dist` directory (default: this checkout's); copy one aside to compare it with the
// current build (`cp -r dist /tmp/ab/before`); its parent gets a node_modules link to this checkout's
// and a package.json, so that it runs as it does here. CPU_ROUNDS (3) and CPU_SECONDS (6) set the
// length (CPU_PINNED=0: unpinned, as below); profile a build by putting `--cpu-prof` in BENCH_NODE_ARGS.
//
// `node bench/cpu-per-request.mjs budget [BUILD]` measures every scenario unpinned instead, as
// `npm run bench` runs, and adds the CPU of the server's other threads and of the load generator:
// the machine's cores divided by that total bound a scenario's rate however its work were spread,
// so against the baseline's rate they give the highest ratio the scenario can reach on this machine.
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import Database from "better-sqlite3";
import { root, startServer } from "./lib.mjs";

const ROUNDS = Number(process.env.CPU_ROUNDS ?? 3);
// CPU_PINNED=0 compares builds unpinned, as `npm run bench` runs them: threads then share the
// cores as they would in use, and the whole process's CPU a request is reported too.
const PINNED = process.env.CPU_PINNED !== "0";
const SECONDS = Number(process.env.CPU_SECONDS ?? 6);
const [scenario = "refused", ...builds] = process.argv.slice(2);
const CLOCK_TICKS_PER_SECOND = Number(execFileSync("getconf", ["CLK_TCK"]).toString());
const work = mkdtempSync(join(tmpdir(), "verifyd-cpu-"));

// Each request from its own client address (in its own /24), so per-IP and subnet rules stay quiet.
const addressLua = `
local n = 0
local function address()
  n = n + 1
  return (11 + math.floor(n / 65536) % 200) .. "." .. (math.floor(n / 256) % 256) .. "." .. (n % 256) .. ".1"
end
local function post(path, body, from)
  return wrk.format("POST", path, { ["content-type"] = "application/json", ["x-forwarded-for"] = from or address() }, body)
end
`;
const scripts = {
  healthz: `request = function() return wrk.format("GET", "/healthz") end`,
  // one recipient, many clients: each send after the warm-up's is refused as too soon (429)
  refused: `${addressLua}
request = function() return post("/v1/verifications", '{"channel":"email","to":"refused@example.com","purpose":"sign_in"}') end`,
  // one client past the risk threshold, many recipients: each is refused before its body (428)
  captcha: `${addressLua}
request = function()
  address()
  return post("/v1/verifications", '{"channel":"email","to":"bot-' .. n .. '@example.com","purpose":"sign_in"}', "13.0.0.1")
end`,
  send: `${addressLua}
request = function() return post("/v1/verifications", '{"channel":"email","to":"cpu-' .. n .. '-' .. math.random(1, 1e9) .. '@example.com","purpose":"sign_in"}') end`,
  check: `${addressLua}
local codes = {}
for line in io.lines("${join(work, "codes.txt")}") do codes[#codes + 1] = line end
request = function()
  local id, code = codes[(n % #codes) + 1]:match("(%S+) (%S+)")
  return post("/v1/verifications/check", '{"id":"' .. id .. '","code":"' .. code .. '"}')
end`,
};
if (!scripts[scenario] && scenario !== "budget")
  throw new Error(`unknown scenario ${scenario}: one of ${Object.keys(scripts).join(", ")}`);
for (const [name, text] of Object.entries(scripts)) writeFileSync(join(work, `${name}.lua`), text);

/** Makes a `dist` copied out of the checkout resolve this checkout's packages, as an ES module. */
function runnable(build) {
  const dir = resolve(build);
  const parent = dirname(dir);
  if (!existsSync(join(dir, "main.js"))) throw new Error(`${dir} holds no main.js: build first`);
  if (!existsSync(join(parent, "node_modules"))) {
    symlinkSync(join(root, "node_modules"), join(parent, "node_modules"));
    writeFileSync(join(parent, "package.json"), '{ "type": "module" }\n');
    console.error(`linked ${parent}/node_modules to this checkout's`);
  }
  return join(dir, "main.js");
}

const send = (base, to, from) =>
  fetch(`${base}/v1/verifications`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-forwarded-for": from },
    body: JSON.stringify({ channel: "email", to, purpose: "sign_in" }),
  });

/**
 * Loads `script` for `seconds` with wrk (pinned to CPU 1 unless `pinned` is false). Per request: the
 * server's main-thread CPU, its CPU over all its threads (delivery, checkpointer, GC helpers,
 * libuv's pool), and the load generator's own CPU, read from the shell that waited for it.
 */
function load(pid, base, script, seconds, { pinned = true } = {}) {
  const stat = (path) => readFileSync(path, "utf8").split(") ")[1].split(" ");
  const ticks = (path) => Number(stat(path)[11]) + Number(stat(path)[12]); // utime + stime
  const mainThread = `/proc/${pid}/task/${pid}/stat`;
  const wholeProcess = `/proc/${pid}/stat`;
  const before = [ticks(mainThread), ticks(wholeProcess)];
  const wrk = `wrk -t1 -c50 -d${seconds}s -s ${join(work, `${script}.lua`)} ${base}`;
  // The shell's own stat, read after wrk exits, holds its waited-for children's CPU (cutime, cstime).
  const output = execFileSync("bash", [
    "-c",
    `${pinned ? "taskset -c 1 " : ""}${wrk}; echo; cat /proc/$$/stat`,
  ]).toString();
  const used = [ticks(mainThread) - before[0], ticks(wholeProcess) - before[1]];
  const shell = output.trimEnd().split("\n").at(-1).split(") ")[1].split(" ");
  const loadGenerator = Number(shell[13]) + Number(shell[14]);
  const requests = Number(/(\d+) requests in/.exec(output)?.[1] ?? 0);
  const refused = Number(/Non-2xx or 3xx responses: (\d+)/.exec(output)?.[1] ?? 0);
  const perRequest = (ticks) => ((ticks / CLOCK_TICKS_PER_SECOND) * 1e6) / requests;
  return {
    perSecond: Number(/Requests\/sec:\s+([\d.]+)/.exec(output)?.[1] ?? 0),
    microseconds: perRequest(used[0]),
    serverMicroseconds: perRequest(used[1]),
    loadGeneratorMicroseconds: perRequest(loadGenerator),
    // the refusal scenarios expect nothing but refusals; the others nothing but success
    unexpected: script === "refused" || script === "captcha" ? requests - refused : refused,
  };
}

async function measure(main, scenario, { pinned = true } = {}) {
  const dataDir = mkdtempSync(join(work, "data-"));
  const { child, base } = await startServer(
    main,
    { VERIFYD_DATA_DIR: dataDir },
    "/healthz",
    pinned ? { cpu: 0 } : {},
  );
  const loadFor = (script, seconds) => load(child.pid, base, script, seconds, { pinned });
  try {
    // Past the risk threshold for 13.0.0.1 (captcha), and a first send to the refused recipient.
    for (let n = 0; n < 3; n++) await send(base, `warm-${n}@example.com`, "13.0.0.1");
    await send(base, "refused@example.com", "12.0.0.1");
    loadFor("healthz", 2);
    if (scenario === "check") {
      loadFor("send", SECONDS * 2);
      await new Promise((done) => setTimeout(done, 3_000)); // delivered to the dev inbox
      const db = new Database(join(dataDir, "verifyd.db"), { readonly: true });
      const pairs = db
        .prepare(
          `SELECT o.verification_id AS id, d.code AS code FROM dev_inbox d JOIN outbox o ON o.id = d.id
           JOIN codes c ON c.id = o.verification_id WHERE c.status = 'pending'`,
        )
        .all();
      db.close();
      writeFileSync(join(work, "codes.txt"), pairs.map(({ id, code }) => `${id} ${code}\n`).join(""));
      // lets the server settle after the burst of sends (deliveries, WAL checkpoints) before measuring
      loadFor("healthz", 2);
    }
    // A check scenario longer than its codes last would check used codes: keep it short.
    return loadFor(scenario, scenario === "check" ? Math.ceil(SECONDS / 2) : SECONDS);
  } finally {
    child.kill("SIGTERM");
    await new Promise((done) => child.once("exit", done));
    rmSync(dataDir, { recursive: true, force: true });
  }
}

const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

/**
 * `budget`: what this machine allows each scenario at most, measured unpinned as `npm run bench`
 * runs. Requests are served by one thread, so a scenario's rate is at most 1 / (that thread's CPU
 * per request); and, however its work were spread over threads, at most cores / (the CPU per
 * request of the whole machine: the server's threads and the load generator). Against the
 * baseline's measured rate, each bound is the highest ratio the scenario can reach here.
 */
async function budget(main) {
  const cores = availableParallelism();
  const rows = [];
  for (const name of ["healthz", "send", "check", "refused", "captcha"]) {
    const runs = [];
    for (let round = 0; round < ROUNDS; round++) runs.push(await measure(main, name, { pinned: false }));
    const of = (key) => median(runs.map((run) => run[key]));
    const machine = of("serverMicroseconds") + of("loadGeneratorMicroseconds");
    const unexpected = runs.reduce((sum, run) => sum + run.unexpected, 0);
    if (unexpected > 0) console.error(`${name}: ${unexpected} unexpected answers`);
    rows.push({
      name,
      perSecond: of("perSecond"),
      main: of("microseconds"),
      server: of("serverMicroseconds"),
      loadGenerator: of("loadGeneratorMicroseconds"),
      machine,
    });
    console.error(`done: ${name}`);
  }
  const baseline = rows[0];
  console.log(
    `CPU budget: ${cores} cores, wrk -t1 -c50, medians of ${ROUNDS} fresh servers; µs of CPU per request`,
  );
  console.log(
    "| scenario | req/s | ratio | request thread | server, all threads | load generator | machine | request-thread bound | machine bound |",
  );
  console.log("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
  // The bounds as ratios to the baseline's measured rate: one thread serves requests, so it can
  // answer at most 1 / (its CPU per request) a second; the machine at most cores / (all CPU).
  const bound = (microseconds, threads) =>
    `${((threads * 1e6) / microseconds / baseline.perSecond).toFixed(2)}x`;
  for (const row of rows) {
    console.log(
      `| ${row.name} | ${row.perSecond.toFixed(0)} | ${(row.perSecond / baseline.perSecond).toFixed(2)}x | ` +
        `${row.main.toFixed(1)} | ${row.server.toFixed(1)} | ${row.loadGenerator.toFixed(1)} | ${row.machine.toFixed(1)} | ` +
        `${bound(row.main, 1)} | ${bound(row.machine, cores)} |`,
    );
  }
}

try {
  if (scenario === "budget") {
    await budget(runnable(builds[0] ?? join(root, "dist")));
  } else {
    await compareBuilds();
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}

async function compareBuilds() {
  const mains = (builds.length > 0 ? builds : [join(root, "dist")]).map(runnable);
  const results = new Map(mains.map((main) => [main, []]));
  for (let round = 1; round <= ROUNDS; round++) {
    for (const main of mains) {
      const result = await measure(main, scenario, { pinned: PINNED });
      results.get(main).push(result);
      console.log(
        `round ${round}  ${dirname(main)}  ${scenario}: ${result.perSecond.toFixed(0)} req/s, ` +
          `${result.microseconds.toFixed(1)} µs of server CPU a request` +
          (PINNED ? "" : ` (${result.serverMicroseconds.toFixed(1)} µs over all its threads)`) +
          (result.unexpected > 0 ? `, ${result.unexpected} unexpected answers` : ""),
      );
    }
  }
  for (const [main, runs] of results) {
    const of = (key) => median(runs.map((run) => run[key]));
    console.log(
      `median ${dirname(main)}: ${of("microseconds").toFixed(1)} µs a request` +
        (PINNED
          ? ""
          : `, ${of("serverMicroseconds").toFixed(1)} over all threads, ${of("perSecond").toFixed(0)} req/s`),
    );
  }
}
