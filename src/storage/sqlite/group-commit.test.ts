import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createGroupCommit } from "./group-commit.js";
import { openSqliteDatabase, type SqliteDatabase } from "./sqlite-database.js";

describe("group commit", () => {
  let db: SqliteDatabase;
  beforeEach(() => {
    db = openSqliteDatabase({ path: ":memory:", migrate: false });
    db.exec("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER NOT NULL)");
  });
  afterEach(() => db.close());

  const insert = (k: string, v: number) => db.prepare("INSERT INTO t (k, v) VALUES (?, ?)").run(k, v);
  const rows = () => db.prepare("SELECT k, v FROM t ORDER BY k").all();

  it("runs the work of one event-loop turn in one transaction and answers after it commits", async () => {
    const group = createGroupCommit(db);
    const seenInTransaction: boolean[] = [];
    const results = await Promise.all(
      ["a", "b", "c"].map((k, i) =>
        group.run(() => {
          seenInTransaction.push(db.inTransaction);
          insert(k, i);
          return (db.prepare("SELECT count(*) AS n FROM t").get() as { n: number }).n;
        }),
      ),
    );
    // each work sees the writes of the works queued before it in the same group
    expect(results).toEqual([1, 2, 3]);
    expect(seenInTransaction).toEqual([true, true, true]);
    expect(db.inTransaction).toBe(false);
    expect(rows()).toHaveLength(3);
  });

  it("rolls back only the writes of a work that throws; the rest of its group commits", async () => {
    const group = createGroupCommit(db);
    const runs = new Map<string, number>();
    const work = (k: string, fail: boolean) => () => {
      runs.set(k, (runs.get(k) ?? 0) + 1);
      insert(k, 1);
      if (fail) throw new Error(`work ${k} failed after writing`);
      return k;
    };
    const outcomes = await Promise.allSettled([
      group.run(work("a", false)),
      group.run(work("b", true)),
      group.run(work("c", false)),
    ]);
    expect(outcomes.map((o) => o.status)).toEqual(["fulfilled", "rejected", "fulfilled"]);
    expect((outcomes[1] as PromiseRejectedResult).reason.message).toBe("work b failed after writing");
    expect(rows()).toEqual([
      { k: "a", v: 1 },
      { k: "c", v: 1 },
    ]);
    // the attempt without savepoints stopped at b and was rolled back whole; the group then ran
    // again with a savepoint per work
    expect(Object.fromEntries(runs)).toEqual({ a: 2, b: 2, c: 1 });
  });

  it("tells its listener once a batch's callers have gone on with their answers, before the next turn", async () => {
    const group = createGroupCommit(db);
    const events: string[] = [];
    group.onAnswered(() => events.push("answered"));
    const caller = async (k: string, fail: boolean) => {
      try {
        await group.run(() => {
          // an immediate queued while the batch runs: the turn after the one that answers
          setImmediate(() => events.push(`next turn after ${k}`));
          insert(k, 1);
          if (fail) throw new Error("refused");
        });
        events.push(`${k} committed`);
      } catch {
        events.push(`${k} failed`);
      }
      // a handler goes on for a few steps with its answer before it replies
      await Promise.resolve();
      await Promise.resolve();
      events.push(`${k} replied`);
    };
    await Promise.all([caller("a", false), caller("b", false)]);
    await new Promise((resolve) => setImmediate(resolve));
    expect(events).toEqual([
      "a committed",
      "b committed",
      "a replied",
      "b replied",
      "answered",
      "next turn after a",
      "next turn after b",
    ]);

    // A batch with a failure (run again with a savepoint per work) is announced the same way.
    events.length = 0;
    await Promise.all([caller("c", false), caller("d", true)]);
    await new Promise((resolve) => setImmediate(resolve));
    expect(events.slice(0, 5)).toEqual(["c committed", "d failed", "c replied", "d replied", "answered"]);
  });

  it("runs a group without failures once", async () => {
    const group = createGroupCommit(db);
    let runs = 0;
    await Promise.all(
      [1, 2].map((v) =>
        group.run(() => {
          runs += 1;
          insert(`k${v}`, v);
        }),
      ),
    );
    expect(runs).toBe(2);
  });
});

describe("group commit when another connection holds the write lock", () => {
  let dir: string;
  let db: SqliteDatabase;
  let other: SqliteDatabase;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "verifyd-group-lock-"));
    db = openSqliteDatabase({ path: join(dir, "db.sqlite"), migrate: false });
    db.exec("CREATE TABLE t (k TEXT PRIMARY KEY)");
    other = openSqliteDatabase({ path: join(dir, "db.sqlite"), migrate: false });
  });
  afterEach(() => {
    if (other.inTransaction) other.exec("ROLLBACK");
    other.close();
    db.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("waits for the lock without blocking the event loop, then commits", async () => {
    other.exec("BEGIN IMMEDIATE");
    const group = createGroupCommit(db);
    const written = group.run(() => db.prepare("INSERT INTO t (k) VALUES ('a')").run().changes);
    // SQLite's busy handler would sleep right here, holding up every timer and request
    const ticks: number[] = [];
    const ticker = setInterval(() => ticks.push(Date.now()), 5);
    await new Promise((resolve) => setTimeout(resolve, 60));
    expect(ticks.length).toBeGreaterThanOrEqual(5);
    other.exec("COMMIT");
    await expect(written).resolves.toBe(1);
    clearInterval(ticker);
    expect(db.prepare("SELECT k FROM t").all()).toEqual([{ k: "a" }]);
  });

  it("fails as an unavailable store once the connection's busy timeout has passed", async () => {
    db.pragma("busy_timeout = 50");
    other.exec("BEGIN IMMEDIATE");
    const group = createGroupCommit(db);
    const started = Date.now();
    await expect(group.run(() => db.prepare("INSERT INTO t (k) VALUES ('a')").run())).rejects.toMatchObject({
      code: "STORE_UNAVAILABLE",
      cause: { code: "SQLITE_BUSY" },
    });
    expect(Date.now() - started).toBeGreaterThanOrEqual(50);
    other.exec("ROLLBACK");
    // the group carries on once the lock is free
    await expect(group.run(() => db.prepare("INSERT INTO t (k) VALUES ('b')").run().changes)).resolves.toBe(
      1,
    );
    expect(db.pragma("busy_timeout", { simple: true })).toBe(50);
  });

  it("fails the works that find the disk full as an unavailable store, and commits again once there is room", async () => {
    const dir = mkdtempSync(join(tmpdir(), "verifyd-group-full-"));
    const file = openSqliteDatabase({ path: join(dir, "full.db"), migrate: false });
    try {
      file.exec("CREATE TABLE t (k TEXT PRIMARY KEY, v TEXT NOT NULL)");
      const group = createGroupCommit(file);
      const write = (k: string) => () =>
        file.prepare("INSERT INTO t (k, v) VALUES (?, ?)").run(k, "x".repeat(3_000));
      await group.run(write("before"));
      // a file that may not grow: SQLite's answer is the one a full disk gives (SQLITE_FULL)
      file.pragma(`max_page_count = ${file.pragma("page_count", { simple: true })}`);
      // SQLite rolls the whole transaction back on a full disk: the update that needs no new page,
      // queued after the insert that does, must neither run on its own nor be reported done
      const update = () => file.prepare("UPDATE t SET v = ? WHERE k = 'before'").run("y".repeat(3_000));
      const outcomes = await Promise.allSettled([
        group.run(write("a")),
        group.run(update),
        group.run(write("c")),
      ]);
      for (const outcome of outcomes) {
        expect(outcome).toMatchObject({
          status: "rejected",
          reason: { code: "STORE_UNAVAILABLE", cause: { code: "SQLITE_FULL" } },
        });
      }
      // an error of the work's own is not the store's
      await expect(group.run(write("before"))).rejects.toMatchObject({
        code: "SQLITE_CONSTRAINT_PRIMARYKEY",
      });
      file.pragma("max_page_count = 1073741823");
      await expect(group.run(write("after"))).resolves.toMatchObject({ changes: 1 });
      expect(file.prepare("SELECT k, substr(v, 1, 1) AS v FROM t ORDER BY k").all()).toEqual([
        { k: "after", v: "x" },
        { k: "before", v: "x" },
      ]);
    } finally {
      file.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  // Regression: the purge paced itself by the time of its statements alone, while BEGIN and the
  // COMMIT (which writes every page the batch dirtied) were 53-69% of its transactions' time, so
  // it held the write lock half the time instead of a third. @see .scratch/rev-storage NOTES.md
  it("tells how long a work's transaction held the write lock, its commit included", async () => {
    const dir = mkdtempSync(join(tmpdir(), "verifyd-group-timed-"));
    const fileDb = openSqliteDatabase({ path: join(dir, "verifyd.db"), migrate: false });
    try {
      fileDb.exec("CREATE TABLE pages (n INTEGER PRIMARY KEY, body BLOB NOT NULL)");
      const group = createGroupCommit(fileDb);
      const insertPage = fileDb.prepare("INSERT INTO pages (n, body) VALUES (?, randomblob(3000))");
      // a page a row: the commit writes 3,000 pages to the WAL
      let workMs = 0;
      const calledAt = performance.now();
      const { value, transactionMs } = await group.runTimed(() => {
        const startedAt = performance.now();
        for (let n = 0; n < 3_000; n++) insertPage.run(n);
        workMs = performance.now() - startedAt;
        return "done";
      });
      const answeredAfterMs = performance.now() - calledAt;
      expect(value).toBe("done");
      // writing the pages takes longer than making them did (~1.7 times as long here)
      expect(transactionMs).toBeGreaterThan(1.25 * workMs);
      expect(transactionMs).toBeLessThanOrEqual(answeredAfterMs);
    } finally {
      fileDb.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
