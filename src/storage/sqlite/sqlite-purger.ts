import { timeOrderedKeyBound } from "../../core/ids.js";
import type { GroupCommit } from "./group-commit.js";
import type { SqliteDatabase } from "./sqlite-database.js";

// Rows outlive their expiry by a day so `GET /v1/verifications/{id}` still explains what happened.
const KEEP_AFTER_EXPIRY_MS = 24 * 3600 * 1000;
// Small batches keep each purge transaction short, so requests never wait long behind it: 500
// expired codes take ~8 ms to delete (each leaves a page of the slot index at a random place).
const PURGE_BATCH_ROWS = 500;

/**
 * Deletes expired rows in small batches so the file stays bounded under sustained load. Resolves
 * to how many rows went; call it repeatedly to catch up (`startPurgeLoop` does; a full sweep of
 * the counters takes as many calls as there are slices of them). Each table's batch is one work
 * of the group commit, so no transaction holds the write lock for more than one batch, and like
 * every work it never sleeps on the event loop waiting for the lock.
 */
export function createSqlitePurger(
  db: SqliteDatabase,
  group: GroupCommit,
): (nowMs: number) => Promise<number> {
  const old = (table: string, column: string, where = "") =>
    db.prepare(
      `DELETE FROM ${table} WHERE rowid IN (SELECT rowid FROM ${table} WHERE ${column} < ? ${where} LIMIT ${PURGE_BATCH_ROWS})`,
    );
  const withoutRowid = (table: string, keys: string, column: string) =>
    db.prepare(
      `DELETE FROM ${table} WHERE (${keys}) IN (SELECT ${keys} FROM ${table} WHERE ${column} < ? LIMIT ${PURGE_BATCH_ROWS})`,
    );
  const steps: { statement: ReturnType<typeof db.prepare>; graceMs: number }[] = [
    { statement: old("codes", "expires_at"), graceMs: KEEP_AFTER_EXPIRY_MS },
    { statement: old("outbox", "created_at", "AND status <> 'queued'"), graceMs: KEEP_AFTER_EXPIRY_MS },
    { statement: old("deliveries", "at"), graceMs: 7 * KEEP_AFTER_EXPIRY_MS },
    { statement: old("dev_inbox", "created_at"), graceMs: KEEP_AFTER_EXPIRY_MS },
    { statement: withoutRowid("idempotency", "app_id, key", "expires_at"), graceMs: 0 },
    { statement: withoutRowid("sessions", "token_hash", "expires_at"), graceMs: 0 },
    { statement: withoutRowid("captcha_challenges", "token", "expires_at"), graceMs: 0 },
    { statement: withoutRowid("captcha_passes", "token_hash", "expires_at"), graceMs: 0 },
    { statement: old("send_log", "at"), graceMs: 30 * KEEP_AFTER_EXPIRY_MS },
  ];
  // Counters have no expiry index: it cost ~20% of every counter write on the send path. They are
  // swept instead in key order, one bounded slice per purge, resuming where the last one stopped.
  const counterSliceEnd = db.prepare(
    `SELECT app_id, key FROM counters WHERE (app_id, key) > (?, ?) ORDER BY app_id, key LIMIT 1 OFFSET ${PURGE_BATCH_ROWS - 1}`,
  );
  const deleteCounterSlice = db.prepare(
    "DELETE FROM counters WHERE (app_id, key) > (?, ?) AND (app_id, key) <= (?, ?) AND reset_at < ?",
  );
  const deleteCounterTail = db.prepare("DELETE FROM counters WHERE (app_id, key) > (?, ?) AND reset_at < ?");
  type Cursor = { app_id: string; key: string };
  const START: Cursor = { app_id: "", key: "" };
  // Where the next slice starts. A work of the group commit may run twice, so a sweep returns the
  // next cursor and it is kept only once the purge has committed.
  let cursor = START;
  const sweepCounters = (from: Cursor, nowMs: number): { removed: number; next: Cursor } => {
    const end = counterSliceEnd.get(from.app_id, from.key) as Cursor | undefined;
    if (!end) return { removed: deleteCounterTail.run(from.app_id, from.key, nowMs).changes, next: START };
    const removed = deleteCounterSlice.run(from.app_id, from.key, end.app_id, end.key, nowMs).changes;
    return { removed, next: end };
  };
  // Tokens have no expiry index either (migration 5): keyed by their expiry first, the expired ones
  // sort before the bound of now. Tokens minted before that timed their key by approval instead,
  // so the expiry is checked too; such a token is passed over until it expires.
  const deleteExpiredTokens = db.prepare(
    `DELETE FROM tokens WHERE token_hash IN (
       SELECT token_hash FROM tokens WHERE token_hash < ? AND expires_at < ? LIMIT ${PURGE_BATCH_ROWS})`,
  );
  return async (nowMs) => {
    const sweep = await group.run(() => sweepCounters(cursor, nowMs));
    cursor = sweep.next;
    let removed = sweep.removed;
    removed += await group.run(() => deleteExpiredTokens.run(timeOrderedKeyBound(nowMs), nowMs).changes);
    for (const { statement, graceMs } of steps) {
      removed += await group.run(() => statement.run(nowMs - graceMs).changes);
    }
    return removed;
  };
}
