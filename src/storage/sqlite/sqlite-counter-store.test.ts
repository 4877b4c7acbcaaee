import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createCounterKeyFilter } from "./counter-key-filter.js";
import { type CounterRow, prepareCounterHit } from "./sqlite-counter-store.js";
import { openSqliteDatabase, type SqliteDatabase } from "./sqlite-database.js";

const NOW = 1_700_000_000_000;
const WINDOW_MS = 60_000;

describe("prepareCounterHit", () => {
  let db: SqliteDatabase;
  let filter: ReturnType<typeof createCounterKeyFilter>;
  beforeEach(() => {
    db = openSqliteDatabase({ path: ":memory:" });
    filter = createCounterKeyFilter(db, { nowMs: () => NOW });
  });
  afterEach(() => {
    filter.stop();
    db.close();
  });

  const stored = (key: string) =>
    db
      .prepare("SELECT count, reset_at FROM counters WHERE app_id = 'app' AND key = ?")
      .get(key) as CounterRow;
  const put = (key: string, row: CounterRow) =>
    db
      .prepare("INSERT INTO counters (app_id, key, count, reset_at) VALUES ('app', ?, ?, ?)")
      .run(key, row.count, row.reset_at);

  // hitAfterRead works the new state out instead of reading it back: it must be what was stored.
  it.each([
    { name: "a counter with no row", row: undefined, live: false },
    { name: "a counter in its window", row: { count: 3, reset_at: NOW + 5_000 }, live: true },
    { name: "a counter whose window ended", row: { count: 9, reset_at: NOW - 1 }, live: false },
    { name: "a counter whose window ends now", row: { count: 9, reset_at: NOW }, live: false },
  ])("hitAfterRead returns what it stored, for $name", ({ row, live }) => {
    const counters = prepareCounterHit(db, filter);
    if (row) put("k", row);
    const after = counters.hitAfterRead("app", "k", WINDOW_MS, NOW, live ? row : undefined);
    expect(after).toEqual(stored("k"));
    expect(after).toEqual(
      live && row
        ? { count: row.count + 1, reset_at: row.reset_at }
        : { count: 1, reset_at: NOW + WINDOW_MS },
    );
    expect(filter.mayExist("app", "k", NOW)).toBe(true);
  });

  it("hit reads the counter back", () => {
    const counters = prepareCounterHit(db, filter);
    put("k", { count: 3, reset_at: NOW + 5_000 });
    expect(counters.hit("app", "k", WINDOW_MS, NOW)).toEqual({ count: 4, reset_at: NOW + 5_000 });
    expect(counters.hit("app", "new", WINDOW_MS, NOW)).toEqual({ count: 1, reset_at: NOW + WINDOW_MS });
  });
});
