import type { SqliteDatabase } from "./sqlite-database.js";

// The counters table has no index but its key, so whatever reads it whole walks it in key order, a
// slice of keys at a time: the key filter loading the live counters at start, and the purger's
// sweep finding expired ones. A slice is the keys after its start up to its end (or the table's
// end), found with the key index alone.

/** A counter's key as the table orders it. */
export type CounterKey = readonly [appId: string, key: string];

/** Before every key: where a walk starts, and starts over. */
export const BEFORE_FIRST_COUNTER: CounterKey = ["", ""];

/** The keys of a slice: bind its start, then its end. */
export const KEYS_IN_SLICE = "(app_id, key) > (?, ?) AND (app_id, key) <= (?, ?)";

/** The keys after a start, to the table's end: the last slice. */
export const KEYS_AFTER = "(app_id, key) > (?, ?)";

/**
 * The end of the slice of `keys` keys after `after`: its last key, or undefined when fewer are
 * left (the slice then runs to the table's end).
 */
export function prepareSliceEnd(
  db: SqliteDatabase,
): (after: CounterKey, keys: number) => CounterKey | undefined {
  const end = db
    .prepare(`SELECT app_id, key FROM counters WHERE ${KEYS_AFTER} ORDER BY app_id, key LIMIT 1 OFFSET ?`)
    .raw();
  return (after, keys) => end.get(after[0], after[1], keys - 1) as CounterKey | undefined;
}
