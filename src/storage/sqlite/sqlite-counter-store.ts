import type { CounterState, CounterStore } from "../../core/ports.js";
import type { CounterKeyFilter } from "./counter-key-filter.js";
import type { SqliteDatabase } from "./sqlite-database.js";

/** Adds one to a windowed counter; a window starts at its first hit, an elapsed one restarts at 1. */
export const COUNTER_HIT_SQL = `
  INSERT INTO counters (app_id, key, count, reset_at) VALUES (@app, @key, 1, @now + @windowMs)
  ON CONFLICT (app_id, key) DO UPDATE SET
    count = CASE WHEN reset_at <= @now THEN 1 ELSE count + 1 END,
    reset_at = CASE WHEN reset_at <= @now THEN @now + @windowMs ELSE reset_at END
  RETURNING count, reset_at`;

/** Windowed counters: `INSERT … ON CONFLICT DO UPDATE … RETURNING`, one statement, atomic. */
export function createSqliteCounterStore(db: SqliteDatabase, keys: CounterKeyFilter): CounterStore {
  const statements = {
    hit: db.prepare(COUNTER_HIT_SQL),
    get: db.prepare("SELECT count, reset_at FROM counters WHERE app_id = ? AND key = ? AND reset_at > ?"),
    reset: db.prepare("DELETE FROM counters WHERE app_id = ? AND key = ?"),
  };
  const toState = (row: { count: number; reset_at: number } | undefined): CounterState =>
    row ? { count: row.count, resetAtMs: row.reset_at } : { count: 0, resetAtMs: 0 };
  return {
    async hit(appId, key, windowSeconds, nowMs) {
      const row = statements.hit.get({ app: appId, key, now: nowMs, windowMs: windowSeconds * 1000 }) as {
        count: number;
        reset_at: number;
      };
      keys.add(appId, key, row.reset_at);
      return toState(row);
    },
    async peek(appId, key, nowMs) {
      if (!keys.mayExist(appId, key, nowMs)) return toState(undefined);
      return toState(statements.get.get(appId, key, nowMs) as never);
    },
    async reset(appId, key) {
      statements.reset.run(appId, key);
    },
  };
}
