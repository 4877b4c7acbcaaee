import { createRequire } from "node:module";
import { Worker } from "node:worker_threads";
import type { LoopReport } from "../backend.js";

// A checkpoint copies the WAL into the database file and syncs it: milliseconds of blocking I/O
// that, done by SQLite's automatic checkpoint, would stall every request on the event loop. A
// worker thread with its own connection does it instead.
//
// It must keep the WAL short without ever making the writer wait long. PASSIVE checkpoints never
// take the write lock, but the WAL only starts over from its beginning once a checkpoint has
// copied every frame before the next commit, which under sustained writes never happens: the WAL
// grew until a TRUNCATE checkpoint, which holds the write lock while it copies, syncs and waits
// (50-100 ms stalls every second or two with random-order sends). So: PASSIVE again at once while
// frames are left; once one has caught up, a RESTART, which then has little or nothing left to
// copy, holds the write lock briefly and makes the next commit start the WAL over. The
// connection never waits for a lock (busy_timeout 0): a checkpoint that would is retried later.
const CATCH_UP_PAUSE_MS = 1;
const IDLE_PAUSE_MS = 200;
// 16 MiB of WAL: restarting more often would sync the database file more often for little gain.
const RESTART_AFTER_PAGES = 4_096;
// If the WAL grows past this anyway (a reader holding an old snapshot), a TRUNCATE that succeeds
// shrinks the file too.
const TRUNCATE_AFTER_PAGES = 65_536;

export interface CheckpointerOptions {
  restartAfterPages?: number;
}

const workerSource = (restartAfterPages: number) => `
const { parentPort, workerData } = require("node:worker_threads");
const Database = require(workerData.driver);
const db = new Database(workerData.path);
db.pragma("busy_timeout = 0");
const checkpoint = (mode) => db.pragma("wal_checkpoint(" + mode + ")")[0];
let timer = null;
let lastLog = 0;
let failing = false;
const run = () => {
  let pause = ${IDLE_PAUSE_MS};
  try {
    const { log, checkpointed } = checkpoint("PASSIVE");
    if (log > ${TRUNCATE_AFTER_PAGES}) checkpoint("TRUNCATE");
    else if (log === checkpointed && log > ${restartAfterPages}) checkpoint("RESTART");
    // A busy writer (frames left, or new ones since the last round, in a WAL past a quarter of
    // the restart size) is kept up with; a light one is checkpointed at the idle pace, so it does
    // not cost two syncs per commit.
    if (log > ${restartAfterPages / 4} && (checkpointed < log || log !== lastLog)) pause = ${CATCH_UP_PAUSE_MS};
    lastLog = log;
    if (failing) parentPort.postMessage({ recovered: true });
    failing = false;
  } catch (error) {
    failing = true;
    parentPort.postMessage({ error: String(error) });
  }
  timer = setTimeout(run, pause);
};
timer = setTimeout(run, ${IDLE_PAUSE_MS});
parentPort.on("message", (message) => {
  if (message !== "stop") return;
  clearTimeout(timer);
  try { checkpoint("PASSIVE"); } finally { db.close(); parentPort.postMessage("stopped"); }
});
`;

/**
 * Checkpoints the WAL of the database at `path` from a worker thread. The caller turns SQLite's
 * automatic checkpoint off on its own connection. `stop` does a last checkpoint and waits for it.
 * `report` hears of every failed checkpoint (one every 200 ms while the disk is full: it throttles
 * its lines) and of the first to work after failures.
 */
export function startSqliteCheckpointer(path: string, report: LoopReport, options: CheckpointerOptions = {}) {
  const driver = createRequire(import.meta.url).resolve("better-sqlite3");
  const worker = new Worker(workerSource(options.restartAfterPages ?? RESTART_AFTER_PAGES), {
    eval: true,
    workerData: { path, driver },
  });
  worker.on("message", (message: unknown) => {
    if (typeof message !== "object" || message === null) return;
    if ("error" in message) report.failed(String(message.error));
    else if ("recovered" in message) report.succeeded();
  });
  worker.on("error", (error) => report.failed(String(error)));
  // The checkpointer never keeps the process alive on its own.
  worker.unref();
  return {
    stop(): Promise<void> {
      return new Promise((resolve) => {
        const done = () => {
          void worker.terminate().finally(resolve);
        };
        worker.once("message", done);
        worker.once("exit", () => resolve());
        worker.postMessage("stop");
      });
    },
  };
}
