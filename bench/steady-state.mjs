// `node bench/steady-state.mjs`: sends while the purge has work to do.
//
// `npm run bench` starts every scenario on a new file, so the purge has nothing to do. A server that
// has sent for days does: each second it must delete about as many rows as its sends write (a code,
// its outbox, inbox and delivery rows, five counters, the send-log entry) or the file grows without
// bound. Three runs of the send scenario, each beside the baseline, on a fresh server:
//
// 1. on a new file;
// 2. at a steady state: the file holds older sends' rows that come due for purging at the rate
//    run 1 sent at, from the moment the server starts, as they would after days at that rate;
// 3. catching up: the file holds BACKLOG_SENDS sends' rows all already due, as after a long stop.
//
// After runs 2 and 3 it counts, per table, the rows that had come due and how many of them the
// purge removed meanwhile: to keep up it must remove them as fast as they come due.
import { execFileSync } from "node:child_process";
import { cpSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { baselineOf, paired, printTable, root, sendRequest, startVerifyd } from "./lib.mjs";

const BACKLOG_SENDS = Number(process.env.BACKLOG_SENDS ?? 1_000_000);
// To compare builds on one backlog: make it once (`node bench/steady-state.mjs fill DIR`), then
// BACKLOG_TEMPLATE=DIR copies it for run 3. STEADY_RUNS=3 (say) runs only the third.
const BACKLOG_TEMPLATE = process.env.BACKLOG_TEMPLATE;
const RUNS = (process.env.STEADY_RUNS ?? "1,2,3").split(",").map(Number);
const DAY_MS = 24 * 3600 * 1000;
// Run 2's rows come due over this long after the server starts: past the end of its run.
const STEADY_SECONDS = 60;

// Each table a send writes to: the column the purge reads, how long after it a row is kept, and
// what marks the rows written here (new sends' recipients are `new-N@example.com`).
const TABLES = {
  codes: { column: "expires_at", keptMs: DAY_MS, ours: "recipient LIKE 'old-%'" },
  outbox: { column: "created_at", keptMs: DAY_MS, ours: "recipient LIKE 'old-%'" },
  dev_inbox: { column: "created_at", keptMs: DAY_MS, ours: "recipient LIKE 'old-%'" },
  deliveries: { column: "at", keptMs: 7 * DAY_MS, ours: "verification_id LIKE 'vf_old_%'" },
  send_log: { column: "at", keptMs: 30 * DAY_MS, ours: "verification_id LIKE 'vf_old_%'" },
  counters: { column: "reset_at", keptMs: 0, ours: "key LIKE '%:old-%'" },
};

/** A time-ordered id's time part (src/core/ids.ts): ms since the epoch, 9 base36 digits. */
const timePart = (ms) => ms.toString(36).padStart(9, "0");

/**
 * Writes `sends` sends' rows, shaped as the server writes them (compare with a row a real send
 * left), dated so that send i's rows come due for purging at `dueFromMs + i * spacingMs`.
 */
function fillBacklog(file, sends, dueFromMs, spacingMs) {
  const db = new Database(file);
  db.pragma("journal_mode = WAL");
  const n = `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ${sends})`;
  const dueLess = (keptMs) => `CAST(${dueFromMs - keptMs} + i * ${spacingMs} AS INTEGER)`;
  // Ids carry the time part of the first send (every one sorts before any new send's id) and a
  // sequence number, which keeps them in the order they come due, as real ids are.
  const stamp = `'${timePart(dueFromMs - 2 * DAY_MS)}'`;
  const rcpt = "('old-' || i || '@example.com')";
  const ip = "('old-' || (i / 65536 % 256) || '.' || (i / 256 % 256) || '.' || (i % 256))";
  const day = dueLess(DAY_MS);
  db.transaction(() => {
    db.exec(`${n} INSERT INTO codes SELECT 'vf_' || ${stamp} || printf('%012d', i) || hex(randomblob(12)), 'default',
      'email:' || ${rcpt} || ':sign_in', 'email', ${rcpt}, 'sign_in', 'sign_in', hex(randomblob(32)), 'pending', 0, 5,
      ${day} - 600000, ${day}, 'en', NULL FROM n`);
    db.exec(`${n} INSERT INTO outbox (id, app_id, verification_id, channel, recipient, purpose, locale, sealed_code,
      created_at, deliver_before, attempts, next_attempt_at, claimed_until, status)
      SELECT 'msg_' || ${stamp} || printf('%012d', i) || hex(randomblob(5)), 'default', 'vf_old_' || i, 'email', ${rcpt},
      'sign_in', 'en', NULL, ${day}, ${day} + 600000, 1, ${day} + 30000, NULL, 'sent' FROM n`);
    db.exec(`INSERT INTO dev_inbox SELECT id, 'default', 'email', recipient, 'Your verifyd sign-in code',
      'Your verifyd sign-in code is 123456. It expires in 10 minutes. If you did not try to sign in, ignore this message.',
      '123456', created_at FROM outbox WHERE recipient LIKE 'old-%'`);
    db.exec(`${n} INSERT INTO deliveries (app_id, verification_id, message_id, provider, status, at, error,
      provider_message_id) SELECT 'default', 'vf_old_' || i, 'msg_old_' || i, 'dev', 'sent', ${dueLess(7 * DAY_MS)},
      NULL, 'msg_old_' || i FROM n`);
    db.exec(`${n} INSERT INTO send_log (at, app_id, face, channel, recipient, country, ip, device_id, purpose, decision,
      reason, shadowed, verification_id) SELECT ${dueLess(30 * DAY_MS)}, 'default', 'native', 'email',
      'o***@example.com', NULL, ${ip}, NULL, 'sign_in', 'accepted', NULL, NULL, 'vf_old_' || i FROM n`);
    for (const key of [
      `'ip:' || ${ip} || ':3600'`,
      `'ip:' || ${ip} || ':risk:600'`,
      `'r:email:' || ${rcpt} || ':60'`,
      `'r:email:' || ${rcpt} || ':600'`,
      `'r:email:' || ${rcpt} || ':86400'`,
    ]) {
      db.exec(`${n} INSERT INTO counters SELECT 'default', ${key}, 1, ${dueLess(0)} FROM n`);
    }
  })();
  db.pragma("wal_checkpoint(TRUNCATE)");
  db.close();
}

/** A data dir migrated by verifyd and filled with `fillBacklog`'s rows. */
function makeBacklog(dataDir, sends, dueFromMs, spacingMs) {
  const env = { ...process.env, VERIFYD_DATA_DIR: dataDir, VERIFYD_LOG_LEVEL: "warn" };
  execFileSync(process.execPath, [join(root, "dist", "main.js"), "migrate"], { env, stdio: "ignore" });
  fillBacklog(join(dataDir, "verifyd.db"), sends, dueFromMs, spacingMs);
}

/** Per table, the filled rows that come due before `dueBeforeMs` and are still there. */
function countDue(dataDir, dueBeforeMs) {
  const db = new Database(join(dataDir, "verifyd.db"), { readonly: true });
  const counts = {};
  for (const [table, { column, keptMs, ours }] of Object.entries(TABLES)) {
    const sql = `SELECT count(*) AS n FROM ${table} WHERE ${ours} AND ${column} < ?`;
    counts[table] = db.prepare(sql).get(dueBeforeMs - keptMs).n;
  }
  db.close();
  return counts;
}

async function stop(child) {
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGTERM");
  await exited;
}

/** Runs the send scenario on `dataDir`; with `filled`, reports what the purge did meanwhile. */
async function sendsOn(dataDir, name, filled = false) {
  const server = await startVerifyd({ VERIFYD_DATA_DIR: dataDir });
  let result;
  try {
    const baseline = {
      name: "baseline GET /healthz",
      base: server.base,
      request: { path: "/healthz" },
      expectedStatus: 200,
    };
    const requestAt = (i) =>
      sendRequest(i, { channel: "email", to: `new-${i}@example.com`, purpose: "sign_in" });
    result = await paired(baseline, { name, base: server.base, requestAt, expectedStatus: 201 });
  } finally {
    await stop(server.child);
  }
  if (filled) {
    const endedAt = Date.now();
    const left = countDue(dataDir, endedAt);
    // What was due when the server stopped, as it stood before the server started: a copy of the
    // file taken before is too large to keep, so the filled rows are counted by how they were made.
    const made = filled(endedAt);
    console.log(`\n${name}: of the filled rows that had come due when the server stopped, the purge removed`);
    for (const table of Object.keys(TABLES)) {
      console.log(`- ${table}: ${made[table] - left[table]} of ${made[table]} (${left[table]} left)`);
    }
  }
  return result;
}

async function main() {
  const results = [];
  const dirs = [];
  const newDir = () => {
    const dir = mkdtempSync(join(tmpdir(), "verifyd-steady-"));
    dirs.push(dir);
    return dir;
  };
  try {
    let rate = Number(process.env.STEADY_RATE ?? 0);
    if (RUNS.includes(1)) {
      const fresh = await sendsOn(newDir(), "send, new file");
      results.push(fresh);
      rate ||= fresh.requestsPerSecond;
    }
    if (RUNS.includes(2)) {
      rate ||= 5_000;
      const dir = newDir();
      const sends = Math.round(rate * STEADY_SECONDS);
      // Due from a few seconds from now (the server's start) on, `rate` sends' rows a second.
      const dueFromMs = Date.now() + 2_000;
      const spacingMs = 1_000 / rate;
      makeBacklog(dir, sends, dueFromMs, spacingMs);
      const dueBy = (ms) => Math.max(0, Math.min(sends, Math.floor((ms - dueFromMs) / spacingMs)));
      const filled = (endedAt) =>
        Object.fromEntries(
          Object.keys(TABLES).map((table) => [table, (table === "counters" ? 5 : 1) * dueBy(endedAt)]),
        );
      results.push(
        await sendsOn(dir, `send, steady state: ${Math.round(rate)} sends' rows due a second`, filled),
      );
    }
    if (RUNS.includes(3)) {
      const dir = newDir();
      if (BACKLOG_TEMPLATE) cpSync(BACKLOG_TEMPLATE, dir, { recursive: true });
      else makeBacklog(dir, BACKLOG_SENDS, Date.now() - 3_600_000, 0.001);
      const filled = () => ({
        ...Object.fromEntries(Object.keys(TABLES).map((t) => [t, BACKLOG_SENDS])),
        counters: 5 * BACKLOG_SENDS,
      });
      results.push(await sendsOn(dir, `send, catching up with ${BACKLOG_SENDS} sends' rows`, filled));
    }
    printTable("verifyd steady state", [baselineOf("baseline GET /healthz", results), ...results]);
  } finally {
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === "fill") makeBacklog(process.argv[3], BACKLOG_SENDS, Date.now() - 3_600_000, 0.001);
else await main();
