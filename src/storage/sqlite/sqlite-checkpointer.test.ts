import { closeSync, mkdtempSync, openSync, readSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { createOutageLog } from "../../observability/log-throttle.js";
import { createGroupCommit } from "./group-commit.js";
import { createSqliteBackend, type SqliteBackend } from "./index.js";
import { startSqliteCheckpointer } from "./sqlite-checkpointer.js";
import { openSqliteDatabase } from "./sqlite-database.js";

let backend: SqliteBackend | undefined;
let dir: string | undefined;
afterEach(async () => {
  await backend?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
  backend = undefined;
});

describe("background checkpoints", () => {
  it("copies committed WAL pages into the database file from a worker thread", async () => {
    dir = mkdtempSync(join(tmpdir(), "verifyd-checkpoint-"));
    const path = join(dir, "verifyd.db");
    backend = createSqliteBackend({ path });
    const errors: string[] = [];
    backend.startMaintenance?.({ failed: (error) => errors.push(String(error)), succeeded() {} });
    const sizeBefore = statSync(path).size;
    for (let i = 0; i < 3_000; i++) await backend.counters.hit("default", `key-${i}`, 3600, Date.now());
    // The request thread no longer checkpoints: until the worker does, the rows live in the WAL only.
    const deadline = Date.now() + 5_000;
    while (statSync(path).size === sizeBefore && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(statSync(path).size).toBeGreaterThan(sizeBefore);
    expect(errors).toEqual([]);
  });
});

describe("the WAL under sustained writes", () => {
  it("starts over from its beginning again and again, never waiting for a pause in the writes", async () => {
    dir = mkdtempSync(join(tmpdir(), "verifyd-checkpoint-"));
    const path = join(dir, "verifyd.db");
    const db = openSqliteDatabase({ path, migrate: false });
    db.pragma("wal_autocheckpoint = 0");
    db.exec("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB NOT NULL)");
    const insert = db.prepare("INSERT INTO t (k, v) VALUES (?, randomblob(100))");
    db.transaction(() => {
      for (let k = 0; k < 20_000; k++) insert.run(k);
    })();
    const group = createGroupCommit(db);
    const update = db.prepare("UPDATE t SET v = randomblob(100) WHERE k = ?");
    const errors: string[] = [];
    const checkpointer = startSqliteCheckpointer(
      path,
      { failed: (error) => errors.push(String(error)), succeeded() {} },
      { restartAfterPages: 64 },
    );
    // The WAL header's first salt changes each time the WAL starts over.
    const salts = new Set<number>();
    const header = Buffer.alloc(32);
    const readSalt = () => {
      const fd = openSync(`${path}-wal`, "r");
      try {
        if (readSync(fd, header, 0, 32, 0) === 32) salts.add(header.readUInt32BE(16));
      } finally {
        closeSync(fd);
      }
    };
    // A commit every couple of milliseconds, as a loaded server makes them, for a second and a half.
    const until = Date.now() + 1_500;
    while (Date.now() < until) {
      await group.run(() => {
        for (let i = 0; i < 10; i++) update.run(Math.floor(Math.random() * 20_000));
      });
      readSalt();
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    await checkpointer.stop();
    db.close();
    // A checkpoint every half second and no restarts of its own (the previous checkpointer)
    // starts the WAL over at most a couple of times here, by luck.
    expect(salts.size).toBeGreaterThanOrEqual(5);
    expect(errors).toEqual([]);
  });
});

describe("a checkpoint that keeps failing", () => {
  // Regression: each failed checkpoint (one every 200 ms) was an error line of its own, 237 in the
  // 47 s of a full disk, and nothing said when checkpoints worked again. Here another connection
  // holds the file exclusively, which fails every checkpoint (SQLITE_BUSY) until it lets go.
  it("is told once, then once it works again with how many failed", async () => {
    dir = mkdtempSync(join(tmpdir(), "verifyd-checkpoint-"));
    const path = join(dir, "verifyd.db");
    const store = createSqliteBackend({ path });
    backend = store;
    store.db.pragma("locking_mode = EXCLUSIVE");
    await store.counters.hit("default", "key", 3600, Date.now());
    const lines: Array<{ level: string; message: string | undefined; fields: object }> = [];
    const record = (level: string) => (fields: object, message?: string) =>
      void lines.push({ level, message, fields });
    const errorLines = () => lines.filter((line) => line.level === "error").length;
    const outage = createOutageLog({
      clock: { nowMs: () => Date.now() },
      log: { error: record("error"), warn: record("warn"), info: record("info") },
      what: "background checkpoint",
    });
    let failed = 0;
    store.startMaintenance?.({
      failed(error) {
        failed += 1;
        outage.failed(error);
      },
      succeeded: () => outage.succeeded(),
    });
    const until = async (done: () => boolean) => {
      const deadline = Date.now() + 10_000;
      while (!done() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
      expect(done()).toBe(true);
    };
    await until(() => failed >= 4);
    expect(errorLines()).toBe(1);
    store.db.pragma("locking_mode = NORMAL");
    // the lock goes with the connection's next read
    store.db.prepare("SELECT count(*) FROM sqlite_master").get();
    await until(() => lines.some((line) => line.message === "background checkpoint resumed"));
    outage.close();
    expect(lines.map((line) => `${line.level} ${line.message}`)).toEqual([
      "error background checkpoint failed",
      "info background checkpoint resumed",
    ]);
    expect(lines[0]?.fields).toEqual({ err: expect.stringContaining("database is locked") });
    expect(lines[1]?.fields).toMatchObject({ failures: failed });
  });
});
