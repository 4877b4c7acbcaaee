import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createCounterKeyFilter } from "./counter-key-filter.js";
import { createSqliteBackend } from "./index.js";
import { openSqliteDatabase, type SqliteDatabase } from "./sqlite-database.js";

describe("counter key filter", () => {
  let db: SqliteDatabase;
  beforeEach(() => {
    db = openSqliteDatabase({ path: ":memory:" });
  });
  afterEach(() => db.close());

  it("never calls a written key absent, and calls almost every other key absent", () => {
    const filter = createCounterKeyFilter(db);
    for (let i = 0; i < 100_000; i++) filter.add("default", `ip:10.0.${i}:3600`, 5_000);
    let forgotten = 0;
    for (let i = 0; i < 100_000; i++) if (!filter.mayExist("default", `ip:10.0.${i}:3600`, 0)) forgotten++;
    expect(forgotten).toBe(0);
    let falsePositives = 0;
    for (let i = 0; i < 100_000; i++)
      if (filter.mayExist("default", `ip:10.1.${i}:3600`, 0)) falsePositives++;
    expect(falsePositives).toBeLessThan(100); // < 0.1%
    // the app is part of the key
    expect(filter.mayExist("other", "ip:10.0.1:3600", 0)).toBe(false);
  });

  it("calls few absent keys possible when a generation is full (a million keys)", () => {
    const filter = createCounterKeyFilter(db);
    for (let i = 0; i < 1_000_000; i++) filter.add("default", `email:${i}@example.com:86400`, 5_000);
    let falsePositives = 0;
    for (let i = 0; i < 100_000; i++)
      if (filter.mayExist("default", `email:${i}@example.net:86400`, 0)) falsePositives++;
    expect(falsePositives).toBeLessThan(500); // < 0.5%
  });

  it("knows the rows already in the file when it starts", () => {
    db.prepare(
      "INSERT INTO counters (app_id, key, count, reset_at) VALUES ('default', 'r:email:a@x.io:60', 1, 9)",
    ).run();
    const filter = createCounterKeyFilter(db, { nowMs: () => 0 });
    expect(filter.mayExist("default", "r:email:a@x.io:60", 0)).toBe(true);
    expect(filter.mayExist("default", "r:email:b@x.io:60", 0)).toBe(false);
  });

  it("reads a large file's rows a slice at a time between requests, calling every key possible until it is done", async () => {
    const insert = db.prepare(
      "INSERT INTO counters (app_id, key, count, reset_at) VALUES ('default', ?, 1, 90000)",
    );
    for (let i = 0; i < 25; i++) insert.run(`k${String(i).padStart(2, "0")}`);
    const filter = createCounterKeyFilter(db, {
      sliceRows: 10,
      slicesAtStart: 1,
      loadPauseMs: 1,
      nowMs: () => 0,
    });
    expect(filter.mayExist("default", "never-written", 0)).toBe(true);
    // the rest come a slice per timer turn
    for (let waited = 0; filter.mayExist("default", "never-written", 0) && waited < 2_000; waited += 5)
      await new Promise((resolve) => setTimeout(resolve, 5));
    expect(filter.mayExist("default", "never-written", 0)).toBe(false);
    for (let i = 0; i < 25; i++)
      expect(filter.mayExist("default", `k${String(i).padStart(2, "0")}`, 0)).toBe(true);
  });

  it("passes over rows whose window ended before it started", () => {
    const insert = db.prepare(
      "INSERT INTO counters (app_id, key, count, reset_at) VALUES ('default', ?, 1, ?)",
    );
    const nowMs = 10 * 60_000;
    // ended long ago, ended within the margin for a clock that steps back, still counting
    insert.run("dead", nowMs - 120_000);
    insert.run("just-ended", nowMs - 1_000);
    insert.run("live", nowMs + 1_000);
    const filter = createCounterKeyFilter(db, { sliceRows: 2, nowMs: () => nowMs });
    expect(filter.mayExist("default", "dead", nowMs)).toBe(false);
    expect(filter.mayExist("default", "just-ended", nowMs)).toBe(true);
    expect(filter.mayExist("default", "live", nowMs)).toBe(true);
  });

  it("leaves a file with more live counters than it holds to be read, as without a filter", async () => {
    const insert = db.prepare(
      "INSERT INTO counters (app_id, key, count, reset_at) VALUES ('default', ?, 1, 90000)",
    );
    // three generations of two keys hold six
    for (let i = 0; i < 7; i++) insert.run(`k${i}`);
    const filter = createCounterKeyFilter(db, {
      keysPerGeneration: 2,
      sliceRows: 3,
      slicesAtStart: 1,
      loadPauseMs: 1,
      nowMs: () => 0,
    });
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(filter.mayExist("default", "never-written", 0)).toBe(true);
  });

  it("forgets a generation only once every reset_at written to it has passed", () => {
    const filter = createCounterKeyFilter(db, { keysPerGeneration: 2 });
    filter.add("default", "old-1", 1_000);
    filter.add("default", "old-2", 5_000); // the first generation lives until 5 000
    filter.add("default", "new-1", 9_000); // a second generation
    expect(filter.mayExist("default", "old-1", 4_999)).toBe(true);
    expect(filter.mayExist("default", "new-1", 4_999)).toBe(true);
    expect(filter.mayExist("default", "old-1", 5_000)).toBe(false);
    expect(filter.mayExist("default", "old-2", 5_000)).toBe(false);
    // the newest generation is kept whatever its age: it takes the next writes
    expect(filter.mayExist("default", "new-1", 10_000)).toBe(true);
  });

  // A known-good number's counter lives for weeks: among the day's keys it kept each generation
  // from being dropped, until the newest took every key and called most absent ones possible.
  it("keeps counters of long windows apart, so the day's generations are still dropped as they end", () => {
    const day = 86_400_000;
    const filter = createCounterKeyFilter(db, { keysPerGeneration: 1_000 });
    let now = 0;
    // four days of short-lived keys, 1 000 a day, and a long-lived key written every day
    for (let d = 0; d < 4; d++, now += day) {
      filter.add("default", `pump:known:+8613800138${d}`, now + 60 * day, 60 * day);
      for (let i = 0; i < 1_000; i++) filter.add("default", `ip:${d}.${i}:3600`, now + 3_600_000, 3_600_000);
    }
    for (let d = 0; d < 4; d++)
      expect(filter.mayExist("default", `pump:known:+8613800138${d}`, now)).toBe(true);
    // the first days' generations are dropped once their hour-long windows end: their keys are
    // absent again, not kept "possible" for the long-lived keys' 60 days
    for (let i = 0; i < 1_000; i++) expect(filter.mayExist("default", `ip:0.${i}:3600`, now)).toBe(false);
  });

  it("keeps a key written again in a newer generation after the older one is dropped", () => {
    const filter = createCounterKeyFilter(db, { keysPerGeneration: 1 });
    filter.add("default", "k", 1_000);
    filter.add("default", "other", 1_000); // second generation
    filter.add("default", "k", 20_000); // written again: a new window, third generation
    expect(filter.mayExist("default", "k", 1_000)).toBe(true);
  });
});

describe("SQLite counters with the key filter", () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "verifyd-counter-keys-"));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it("still counts a counter written before a restart", async () => {
    const path = join(dir, "verifyd.db");
    const first = createSqliteBackend({ path });
    await first.counters.hit("default", "ip:10.0.0.1:risk:600", 600, 1_000);
    await first.counters.hit("default", "ip:10.0.0.1:risk:600", 600, 1_000);
    await first.close();
    // The clock the counts were made by: at the system's, their window ended long ago.
    const second = createSqliteBackend({ path, clock: { nowMs: () => 2_000 } });
    expect(await second.counters.peek("default", "ip:10.0.0.1:risk:600", 2_000)).toEqual({
      count: 2,
      resetAtMs: 601_000,
    });
    expect(await second.counters.peek("default", "ip:10.0.0.2:risk:600", 2_000)).toEqual({
      count: 0,
      resetAtMs: 0,
    });
    await second.close();
  });
});
