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
