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
// length; profile a build by putting `--cpu-prof` in BENCH_NODE_ARGS.
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import Database from "better-sqlite3";
import { root, startServer } from "./lib.mjs";

const ROUNDS = Number(process.env.CPU_ROUNDS ?? 3);
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
if (!scripts[scenario])
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

/** Loads `script` for `seconds` with wrk pinned to CPU 1; the server's main-thread CPU per request. */
function load(pid, base, script, seconds) {
  const stat = () => readFileSync(`/proc/${pid}/task/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  const ticks = () => Number(stat()[11]) + Number(stat()[12]); // utime + stime
  const before = ticks();
  const output = execFileSync("taskset", [
    "-c",
    "1",
    "wrk",
    "-t1",
    "-c50",
    `-d${seconds}s`,
    "-s",
    join(work, `${script}.lua`),
    base,
  ]).toString();
  const used = ticks() - before;
  const requests = Number(/(\d+) requests in/.exec(output)?.[1] ?? 0);
  const refused = Number(/Non-2xx or 3xx responses: (\d+)/.exec(output)?.[1] ?? 0);
  return {
    perSecond: Number(/Requests\/sec:\s+([\d.]+)/.exec(output)?.[1] ?? 0),
    microseconds: ((used / CLOCK_TICKS_PER_SECOND) * 1e6) / requests,
    // the refusal scenarios expect nothing but refusals; the others nothing but success
    unexpected: script === "refused" || script === "captcha" ? requests - refused : refused,
  };
}

async function measure(main) {
  const dataDir = mkdtempSync(join(work, "data-"));
  const { child, base } = await startServer(main, { VERIFYD_DATA_DIR: dataDir }, "/healthz", { cpu: 0 });
  try {
    // Past the risk threshold for 13.0.0.1 (captcha), and a first send to the refused recipient.
    for (let n = 0; n < 3; n++) await send(base, `warm-${n}@example.com`, "13.0.0.1");
    await send(base, "refused@example.com", "12.0.0.1");
    load(child.pid, base, "healthz", 2);
    if (scenario === "check") {
      load(child.pid, base, "send", SECONDS * 2);
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
      load(child.pid, base, "healthz", 2);
    }
    // A check scenario longer than its codes last would check used codes: keep it short.
    return load(child.pid, base, scenario, scenario === "check" ? Math.ceil(SECONDS / 2) : SECONDS);
  } finally {
    child.kill("SIGTERM");
    await new Promise((done) => child.once("exit", done));
    rmSync(dataDir, { recursive: true, force: true });
  }
}

const mains = (builds.length > 0 ? builds : [join(root, "dist")]).map(runnable);
const results = new Map(mains.map((main) => [main, []]));
try {
  for (let round = 1; round <= ROUNDS; round++) {
    for (const main of mains) {
      const result = await measure(main);
      results.get(main).push(result);
      console.log(
        `round ${round}  ${dirname(main)}  ${scenario}: ${result.perSecond.toFixed(0)} req/s, ` +
          `${result.microseconds.toFixed(1)} µs of server CPU a request` +
          (result.unexpected > 0 ? `, ${result.unexpected} unexpected answers` : ""),
      );
    }
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
for (const [main, runs] of results) {
  const sorted = runs.map((run) => run.microseconds).sort((a, b) => a - b);
  console.log(`median ${dirname(main)}: ${sorted[Math.floor(sorted.length / 2)].toFixed(1)} µs a request`);
}
