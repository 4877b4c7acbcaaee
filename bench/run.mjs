// `npm run bench`: starts verifyd on the embedded default and loads it with autocannon, one
// scenario after another in the same run, each reported as a ratio to the /healthz baseline.
// Load comes from distinct client addresses through the trusted-proxy header, so the per-IP rules
// do not turn the run into refusals; a scenario with unexpected answers is flagged, not a result.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import autocannon from "autocannon";
import Database from "better-sqlite3";

const root = fileURLToPath(new URL("..", import.meta.url));
const DURATION_SECONDS = Number(process.env.BENCH_DURATION ?? 10);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 50);
const only = process.env.BENCH_ONLY?.split(",");

async function freePort() {
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
function clientAddress(i) {
  return `${11 + ((i >> 16) % 200)}.${(i >> 8) & 255}.${i & 255}.1`;
}

async function startServer(dataDir, port) {
  const child = spawn(
    process.execPath,
    [...(process.env.BENCH_NODE_ARGS?.split(" ") ?? []), join(root, "dist", "main.js")],
    {
      env: {
        ...process.env,
        VERIFYD_DATA_DIR: dataDir,
        VERIFYD_PORT: String(port),
        VERIFYD_TRUST_PROXY: "127.0.0.1",
        VERIFYD_LOG_LEVEL: "warn",
        VERIFYD_SECRET: "bench-secret-bench-secret-bench-secret",
      },
      stdio: ["ignore", "ignore", "inherit"],
    },
  );
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 100; i++) {
    try {
      if ((await fetch(`${base}/healthz`)).ok) return { child, base };
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  child.kill("SIGKILL");
  throw new Error("server did not start");
}

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
          requestsPerSecond: result.requests.average,
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

function sendRequest(body, headers = {}) {
  return {
    method: "POST",
    path: "/v1/verifications",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  };
}

const scenarios = {
  async baseline({ base }) {
    return run("baseline GET /healthz", { url: `${base}/healthz` }, 200);
  },

  async send({ base }) {
    let i = 0;
    return run(
      "send (unique recipients)",
      {
        url: base,
        requests: [
          {
            setupRequest: (request) => {
              i += 1;
              return {
                ...request,
                ...sendRequest(
                  { channel: "email", to: `bench-${i}@example.com`, purpose: "sign_in" },
                  { "x-forwarded-for": clientAddress(i) },
                ),
              };
            },
          },
        ],
      },
      201,
    );
  },

  async check({ base, dataDir }) {
    // The codes the send scenario issued, read from the dev inbox (dev mode keeps them there).
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    const db = new Database(join(dataDir, "verifyd.db"), { readonly: true });
    const pairs = db
      .prepare(
        `SELECT o.verification_id AS id, d.code AS code FROM dev_inbox d JOIN outbox o ON o.id = d.id
         JOIN codes c ON c.id = o.verification_id WHERE c.status = 'pending' LIMIT 400000`,
      )
      .all();
    db.close();
    if (pairs.length === 0) throw new Error("no delivered codes to check: run the send scenario first");
    let i = 0;
    return run(
      `check (right code, ${pairs.length} codes)`,
      {
        url: base,
        amount: pairs.length,
        requests: [
          {
            setupRequest: (request) => {
              const pair = pairs[i++ % pairs.length];
              return {
                ...request,
                method: "POST",
                path: "/v1/verifications/check",
                headers: { "content-type": "application/json", "x-forwarded-for": clientAddress(i) },
                body: JSON.stringify(pair),
              };
            },
          },
        ],
      },
      200,
    );
  },

  async refused({ base }) {
    // One recipient, many clients: every send after the first is a RESEND_TOO_SOON refusal.
    await fetch(`${base}/v1/verifications`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-forwarded-for": "12.0.0.1" },
      body: JSON.stringify({ channel: "email", to: "refused@example.com", purpose: "sign_in" }),
    });
    let i = 0;
    return run(
      "refused sends (429 resend too soon)",
      {
        url: base,
        requests: [
          {
            setupRequest: (request) => {
              i += 1;
              return {
                ...request,
                ...sendRequest(
                  { channel: "email", to: "refused@example.com", purpose: "sign_in" },
                  { "x-forwarded-for": clientAddress(1_000_000 + i) },
                ),
              };
            },
          },
        ],
      },
      429,
    );
  },

  async captcha({ base }) {
    // One client, many recipients: past the risk threshold every send is a 428 captcha refusal.
    for (let n = 0; n < 3; n++) {
      await fetch(`${base}/v1/verifications`, {
        method: "POST",
        headers: { "content-type": "application/json", "x-forwarded-for": "13.0.0.1" },
        body: JSON.stringify({ channel: "email", to: `warm-${n}@example.com`, purpose: "sign_in" }),
      });
    }
    let i = 0;
    return run(
      "captcha-required refusals (428)",
      {
        url: base,
        requests: [
          {
            setupRequest: (request) => {
              i += 1;
              return {
                ...request,
                ...sendRequest(
                  { channel: "email", to: `bot-${i}@example.com`, purpose: "sign_in" },
                  { "x-forwarded-for": "13.0.0.1" },
                ),
              };
            },
          },
        ],
      },
      428,
    );
  },
};

async function main() {
  const dataDir = mkdtempSync(join(tmpdir(), "verifyd-bench-"));
  const port = await freePort();
  const server = await startServer(dataDir, port);
  const results = [];
  try {
    for (const [key, scenario] of Object.entries(scenarios)) {
      if (only && key !== "baseline" && !only.includes(key)) continue;
      const result = await scenario({ ...server, dataDir });
      results.push(result);
      console.error(`done: ${result.name}`);
    }
  } finally {
    server.child.kill("SIGTERM");
    rmSync(dataDir, { recursive: true, force: true });
  }
  const baseline = results[0].requestsPerSecond;
  console.log(
    `\nverifyd bench: ${CONNECTIONS} connections, ${DURATION_SECONDS} s per scenario, node ${process.version}`,
  );
  console.log("| scenario | req/s | p50 ms | p99 ms | unexpected answers | ratio to baseline |");
  console.log("|---|---:|---:|---:|---:|---:|");
  for (const r of results) {
    const flag = r.unexpected > 0 ? ` (NOT A RESULT: ${JSON.stringify(r.statuses)})` : "";
    console.log(
      `| ${r.name} | ${Math.round(r.requestsPerSecond)} | ${r.p50} | ${r.p99} | ${r.unexpected}${flag} | ${(r.requestsPerSecond / baseline).toFixed(2)}x |`,
    );
  }
  if (results.some((r) => r.unexpected > 0)) process.exitCode = 1;
}

await main();
