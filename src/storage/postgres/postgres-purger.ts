import type pg from "pg";
import type { PurgePass } from "../backend.js";

// Rows outlive their expiry by a day so `GET /v1/verifications/{id}` still explains deliveries.
const KEEP_AFTER_EXPIRY_MS = 24 * 3600 * 1000;
// Small batches keep each delete short; SKIP LOCKED lets every process purge at once without
// queueing behind each other.
const PURGE_BATCH_ROWS = 2_000;

const batch = (table: string, key: string, condition: string) => `
  DELETE FROM ${table} WHERE ${key} IN (
    SELECT ${key} FROM ${table} WHERE ${condition} LIMIT ${PURGE_BATCH_ROWS} FOR UPDATE SKIP LOCKED)`;

const STEPS: { name: string; text: string; graceMs: number }[] = [
  {
    name: "outbox",
    text: batch("outbox", "id", "status <> 'queued' AND created_at < $1"),
    graceMs: KEEP_AFTER_EXPIRY_MS,
  },
  { name: "deliveries", text: batch("deliveries", "id", "at < $1"), graceMs: 7 * KEEP_AFTER_EXPIRY_MS },
  { name: "dev_inbox", text: batch("dev_inbox", "seq", "created_at < $1"), graceMs: KEEP_AFTER_EXPIRY_MS },
  { name: "sessions", text: batch("sessions", "token_hash", "expires_at < $1"), graceMs: 0 },
  { name: "send_log", text: batch("send_log", "id", "at < $1"), graceMs: 30 * KEEP_AFTER_EXPIRY_MS },
];

/**
 * Deletes expired durable rows, a batch per table. (Redis needs no purge: every hot key carries
 * its own TTL.)
 */
export function createPostgresPurger(pool: pg.Pool): (nowMs: number) => Promise<PurgePass> {
  return async (nowMs) => {
    const pass = { removed: 0, more: false, workMs: 0 };
    for (const step of STEPS) {
      const startedAt = performance.now();
      const result = await pool.query({
        name: `vd_purge_${step.name}`,
        text: step.text,
        values: [nowMs - step.graceMs],
      });
      pass.workMs += performance.now() - startedAt;
      const removed = result.rowCount ?? 0;
      pass.removed += removed;
      // A full batch may have left rows behind; a short one removed all there were (SKIP LOCKED
      // may pass over rows another process is deleting, and that process reports them).
      if (removed === PURGE_BATCH_ROWS) pass.more = true;
    }
    return pass;
  };
}
