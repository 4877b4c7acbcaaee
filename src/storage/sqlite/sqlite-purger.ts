import type { SqliteDatabase } from "./sqlite-database.js";

// Rows outlive their expiry by a day so `GET /v1/verifications/{id}` still explains what happened.
const KEEP_AFTER_EXPIRY_MS = 24 * 3600 * 1000;
// Small batches keep each purge transaction short, so requests never wait long behind it.
const PURGE_BATCH_ROWS = 2_000;

/**
 * Deletes expired rows in small batches so the file stays bounded under sustained load. Returns
 * how many rows went; call it until it returns 0 to catch up.
 */
export function createSqlitePurger(db: SqliteDatabase): (nowMs: number) => number {
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
    { statement: withoutRowid("counters", "app_id, key", "reset_at"), graceMs: 0 },
    { statement: withoutRowid("tokens", "token_hash", "expires_at"), graceMs: 0 },
    { statement: withoutRowid("idempotency", "app_id, key", "expires_at"), graceMs: 0 },
    { statement: withoutRowid("sessions", "token_hash", "expires_at"), graceMs: 0 },
    { statement: withoutRowid("captcha_challenges", "token", "expires_at"), graceMs: 0 },
    { statement: withoutRowid("captcha_passes", "token_hash", "expires_at"), graceMs: 0 },
    { statement: old("send_log", "at"), graceMs: 30 * KEEP_AFTER_EXPIRY_MS },
  ];
  return (nowMs) => {
    let removed = 0;
    for (const { statement, graceMs } of steps) removed += statement.run(nowMs - graceMs).changes;
    return removed;
  };
}
