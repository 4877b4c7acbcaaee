import { createRequire } from "node:module";
import { Worker } from "node:worker_threads";

// A checkpoint copies the WAL into the database file and syncs it: milliseconds of blocking I/O
// that, done by SQLite's automatic checkpoint, would stall every request on the event loop. A
// worker thread with its own connection does it instead, at this pace.
const CHECKPOINT_INTERVAL_MS = 500;
// Past this size the worker asks for a full TRUNCATE checkpoint so the WAL cannot grow for ever
// (a PASSIVE one never waits for readers and can fall behind under sustained load).
const WAL_RESTART_PAGES = 16_384;

const WORKER_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
const Database = require(workerData.driver);
const db = new Database(workerData.path);
db.pragma("busy_timeout = 5000");
const passive = () => db.pragma("wal_checkpoint(PASSIVE)")[0];
const timer = setInterval(() => {
  try {
    const result = passive();
    if (result && result.log > ${WAL_RESTART_PAGES}) db.pragma("wal_checkpoint(TRUNCATE)");
  } catch (error) {
    parentPort.postMessage({ error: String(error) });
  }
}, ${CHECKPOINT_INTERVAL_MS});
parentPort.on("message", (message) => {
  if (message !== "stop") return;
  clearInterval(timer);
  try { passive(); } finally { db.close(); parentPort.postMessage("stopped"); }
});
`;

/**
 * Checkpoints the WAL of the database at `path` from a worker thread. The caller turns SQLite's
 * automatic checkpoint off on its own connection. `stop` does a last checkpoint and waits for it.
 */
export function startSqliteCheckpointer(path: string, onError: (message: string) => void) {
  const driver = createRequire(import.meta.url).resolve("better-sqlite3");
  const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { path, driver } });
  worker.on("message", (message: unknown) => {
    if (typeof message === "object" && message !== null && "error" in message) onError(String(message.error));
  });
  worker.on("error", (error) => onError(String(error)));
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
