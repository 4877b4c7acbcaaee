import Database from "better-sqlite3";
import { describe, expect, it } from "vitest";
import { backendMissing, probePostgres } from "../../../test/cluster/backends.js";
import { poolOnOwnSchema } from "../../../test/cluster/schema-pool.js";
import { migratePostgres, requireMigratedPostgres } from "../postgres/postgres-migrator.js";
import { migrateSqlite } from "../sqlite/sqlite-database.js";
import { POSTGRES_MIGRATIONS } from "./postgres/index.js";
import { SchemaVersionMismatch } from "./schema-version.js";
import { SQLITE_MIGRATIONS } from "./sqlite/index.js";

const newestSqlite = Math.max(...SQLITE_MIGRATIONS.map((migration) => migration.version));
const newestPostgres = Math.max(...POSTGRES_MIGRATIONS.map((migration) => migration.version));

describe("a SQLite file a newer build migrated", () => {
  it("is refused, by the server's start and by `verifyd migrate`, and left as it is", () => {
    const db = new Database(":memory:");
    expect(migrateSqlite(db)).toHaveLength(SQLITE_MIGRATIONS.length);
    db.prepare("INSERT INTO schema_migrations VALUES (?, 'from a newer build', 0)").run(newestSqlite + 1);
    expect(() => migrateSqlite(db)).toThrow(SchemaVersionMismatch);
    expect(() => migrateSqlite(db)).toThrow(`version ${newestSqlite + 1}, newer than this build knows`);
    expect(db.prepare("SELECT count(*) FROM schema_migrations").pluck().get()).toBe(
      SQLITE_MIGRATIONS.length + 1,
    );
  });
});

const probe = await probePostgres();
if (!probe.ok) {
  backendMissing("schema versions on PostgreSQL", probe.reason);
} else {
  const url = probe.url;
  describe("schema versions on PostgreSQL", () => {
    const { schema, pool } = poolOnOwnSchema(url, "pgver");

    it("a server told not to migrate refuses a schema never migrated, then one migrated only part way", async () => {
      await expect(requireMigratedPostgres(pool())).rejects.toThrow("run `verifyd migrate`");
      await migratePostgres(pool(), schema);
      await expect(requireMigratedPostgres(pool())).resolves.toBeUndefined();
      await pool().query("DELETE FROM schema_migrations WHERE version = $1", [newestPostgres]);
      await expect(requireMigratedPostgres(pool())).rejects.toThrow(`lacks migrations ${newestPostgres}`);
      await pool().query("INSERT INTO schema_migrations VALUES ($1, 'restored', 0)", [newestPostgres]);
    });

    it("a schema a newer build migrated is refused, migrating or not", async () => {
      await migratePostgres(pool(), schema);
      await pool().query("INSERT INTO schema_migrations VALUES ($1, 'from a newer build', 0)", [
        newestPostgres + 1,
      ]);
      await expect(migratePostgres(pool(), schema)).rejects.toThrow(SchemaVersionMismatch);
      await expect(requireMigratedPostgres(pool())).rejects.toThrow(`version ${newestPostgres + 1}, newer`);
    });
  });
}
