// `npm run bench`: starts verifyd on the embedded default and loads it with wrk (or autocannon, see
// LOAD_GENERATOR in lib.mjs), one scenario after another in the same run, each in slices beside
// slices of the /healthz baseline (see `paired` in lib.mjs) and reported as a ratio to them. Load
// comes from distinct client addresses through the trusted-proxy header, so the per-IP rules do not
// turn the run into refusals; a scenario with unexpected answers is flagged, not a result.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import {
  baselineOf,
  checkAt,
  paired,
  printTable,
  scattered,
  scatteredAddress,
  sendRequest,
  startVerifyd,
} from "./lib.mjs";

const only = process.env.BENCH_ONLY?.split(",");

/** Accepted sends, each to the recipient (and from the client address) `nth(i)` names. */
function sends(base, name, nth) {
  const requestAt = (i) => {
    const { to, address } = nth(i);
    return sendRequest(i, { channel: "email", to, purpose: "sign_in" }, address);
  };
  return { name, base, requestAt, expectedStatus: 201 };
}

const scenarios = {
  send({ base }) {
    return sends(base, "send (unique recipients)", (i) => ({ to: `bench-${i}@example.com` }));
  },

  sendScattered({ base }) {
    // Real traffic's recipients and client addresses come in no order: each send's counters and
    // code land on random pages of their indexes, where the scenario above mostly appends.
    return sends(base, "send (recipients and addresses in random order)", (i) => ({
      to: `${scattered(i).toString(36)}.${i}@example.com`,
      address: scatteredAddress(i),
    }));
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
    return {
      name: `check (right code, ${pairs.length} codes)`,
      // each code is checked once: the slices share them out
      amount: pairs.length,
      base,
      requestAt: checkAt(pairs),
      expectedStatus: 200,
    };
  },

  async refused({ base }) {
    // One recipient, many clients: every send after the first is a RESEND_TOO_SOON refusal.
    await fetch(`${base}/v1/verifications`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-forwarded-for": "12.0.0.1" },
      body: JSON.stringify({ channel: "email", to: "refused@example.com", purpose: "sign_in" }),
    });
    const body = { channel: "email", to: "refused@example.com", purpose: "sign_in" };
    return {
      name: "refused sends (429 resend too soon)",
      base,
      requestAt: (i) => sendRequest(1_000_000 + i, body),
      expectedStatus: 429,
    };
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
    // one client for every request: past the risk threshold each is a captcha refusal
    const requestAt = (i) =>
      sendRequest(i, { channel: "email", to: `bot-${i}@example.com`, purpose: "sign_in" }, "13.0.0.1");
    return {
      name: "captcha-required refusals (428)",
      base,
      requestAt,
      expectedStatus: 428,
    };
  },
};

async function main() {
  const dataDir = mkdtempSync(join(tmpdir(), "verifyd-bench-"));
  const server = await startVerifyd({ VERIFYD_DATA_DIR: dataDir });
  const baseline = {
    name: "baseline GET /healthz",
    base: server.base,
    request: { path: "/healthz" },
    expectedStatus: 200,
  };
  const results = [];
  try {
    for (const [key, scenario] of Object.entries(scenarios)) {
      if (only && !only.includes(key)) continue;
      const result = await paired(baseline, await scenario({ ...server, dataDir }));
      results.push(result);
      console.error(`done: ${result.name}`);
    }
  } finally {
    server.child.kill("SIGTERM");
    rmSync(dataDir, { recursive: true, force: true });
  }
  printTable("verifyd bench", [baselineOf(baseline.name, results), ...results]);
}

await main();
