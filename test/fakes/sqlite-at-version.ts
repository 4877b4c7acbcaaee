import Database from "better-sqlite3";
import { SQLITE_MIGRATIONS } from "../../src/storage/migrations/sqlite/index.js";

/** A database left by an earlier release: the migrations up to `version`, as that release applied them. */
export function databaseAt(version: number, path = ":memory:"): Database.Database {
  const db = new Database(path);
  db.exec(
    "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)",
  );
  for (const migration of SQLITE_MIGRATIONS.filter((each) => each.version <= version)) {
    db.exec(migration.sql);
    db.prepare("INSERT INTO schema_migrations VALUES (?, ?, ?)").run(migration.version, migration.name, 0);
  }
  return db;
}
