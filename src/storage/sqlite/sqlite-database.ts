import { existsSync } from "node:fs";
import { dirname, resolve } from "node:path";
import Database from "better-sqlite3";
import { requireServableSchema } from "../migrations/schema-version.js";
import { SQLITE_MIGRATIONS } from "../migrations/sqlite/index.js";
import { createPrivateDir, createPrivateFile } from "./private-files.js";

export type SqliteDatabase = Database.Database;

export interface SqliteOptions {
  /** file path, or ":memory:" for tests that need no file */
  path: string;
  /**
   * `NORMAL` (default) survives a process crash (SIGKILL) in WAL mode; `FULL` also survives power
   * loss, at the cost of an fsync per commit (DESIGN.md "Durable").
   */
  synchronous?: "NORMAL" | "FULL";
  /** apply pending migrations on open (the server does; `verifyd migrate` does it explicitly) */
  migrate?: boolean;
  /**
   * open the file only if it exists, creating neither it nor its dir (the delivery thread, whose
   * server made it; the CLI's `apps` commands, run where no server may have been)
   */
  mustExist?: boolean;
}

/** No database file where one must already be (`mustExist`). */
export class NoSqliteDatabase extends Error {
  constructor(path: string) {
    super(
      `no verifyd database at ${resolve(path)} (VERIFYD_DATA_DIR): \`verifyd migrate\` or the server's first start creates it`,
    );
    this.name = "NoSqliteDatabase";
  }
}

const PAGE_CACHE_KIB = 64 * 1024;
const MMAP_BYTES = 256 * 1024 * 1024;
const WAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024;
// Another process (the CLI) may hold the write lock for a moment; wait instead of failing.
const BUSY_TIMEOUT_MS = 5_000;

/** Opens the embedded database in WAL mode and brings its schema up to date. */
export function openSqliteDatabase(options: SqliteOptions): SqliteDatabase {
  const mustExist = (options.mustExist ?? false) && options.path !== ":memory:";
  if (mustExist && !existsSync(options.path)) throw new NoSqliteDatabase(options.path);
  if (options.path !== ":memory:" && !mustExist) {
    createPrivateDir(dirname(options.path));
    createPrivateFile(options.path);
  }
  let db: SqliteDatabase;
  try {
    db = new Database(options.path, { fileMustExist: mustExist });
  } catch (error) {
    // (deleted between the check and the open)
    if (mustExist && !existsSync(options.path)) throw new NoSqliteDatabase(options.path);
    throw error;
  }
  db.pragma("journal_mode = WAL");
  db.pragma(`synchronous = ${options.synchronous ?? "NORMAL"}`);
  db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
  // Counters, codes and the outbox are read on every request; SQLite's default 2 MiB page cache
  // overflows after a few hundred thousand sends, and every read then costs a system call.
  db.pragma(`cache_size = -${PAGE_CACHE_KIB}`);
  db.pragma(`mmap_size = ${MMAP_BYTES}`);
  // The checkpointer keeps the WAL near 16 MiB, but a burst of writes can outrun it; when the WAL
  // next starts over, a file grown past this is cut back to it.
  db.pragma(`journal_size_limit = ${WAL_SIZE_LIMIT_BYTES}`);
  // Savepoints and sorts spill to temporary storage; keep it in memory, not in a temp file.
  db.pragma("temp_store = MEMORY");
  if (options.migrate ?? true) migrateSqlite(db);
  return db;
}

/** Applies the migrations not yet recorded; returns the versions applied. */
export function migrateSqlite(db: SqliteDatabase): number[] {
  db.exec(
    "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)",
  );
  const recorded = db.prepare("SELECT version FROM schema_migrations").pluck().all() as number[];
  requireServableSchema(recorded, SQLITE_MIGRATIONS, { migrated: true });
  const isApplied = db.prepare("SELECT 1 FROM schema_migrations WHERE version = ?");
  const done: number[] = [];
  for (const migration of SQLITE_MIGRATIONS) {
    // Checked inside the write transaction: another process (the CLI) may be migrating too.
    db.transaction(() => {
      if (isApplied.get(migration.version)) return;
      db.exec(migration.sql);
      db.prepare("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)").run(
        migration.version,
        migration.name,
        Date.now(),
      );
      done.push(migration.version);
    }).immediate();
  }
  return done;
}
