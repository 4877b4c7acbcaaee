import pg from "pg";
import { describe, expect, it } from "vitest";
import { backendMissing, probePostgres } from "../../../test/cluster/backends.js";
import { poolOnOwnSchema } from "../../../test/cluster/schema-pool.js";
import { POSTGRES_MIGRATIONS } from "../migrations/postgres/index.js";
import { migratePostgres } from "./postgres-migrator.js";
import { POSTGRES_STATEMENT_TIMEOUT_MS } from "./postgres-pool.js";

const probe = await probePostgres();
if (!probe.ok) {
  backendMissing("migratePostgres: another process migrating", probe.reason);
} else {
  const url = probe.url;
  describe("migratePostgres: another process migrating", () => {
    const { schema, pool } = poolOnOwnSchema(url, "pgmigwait");

    // Regression: the wait for the migration lock ran under the pool's request timeout, so while
    // a migration took longer elsewhere (a rolling deploy) this process failed to start.
    // @see .scratch/storage pg-upgrade.test.ts
    it("waits for it past the request timeout, then finds the schema migrated", async () => {
      const other = new pg.Client({ connectionString: url });
      await other.connect();
      try {
        await other.query("BEGIN");
        await other.query("SELECT pg_advisory_xact_lock(hashtext($1))", [`verifyd migrate ${schema}`]);
        const migrating = migratePostgres(pool(), schema);
        const holdMs = POSTGRES_STATEMENT_TIMEOUT_MS + 2_000;
        await new Promise((resolve) => setTimeout(resolve, holdMs));
        await other.query("COMMIT");
        expect(await migrating).toEqual(POSTGRES_MIGRATIONS.map((migration) => migration.version));
        // Started again, it has nothing left to do.
        expect(await migratePostgres(pool(), schema)).toEqual([]);
      } finally {
        await other.end();
      }
    }, 30_000);
  });

  describe("migratePostgres: a commit slower than the request timeout", () => {
    const { schema, pool } = poolOnOwnSchema(url, "pgmigcommit");

    // Regression: the commit ran under the pool's 6 s request timeout, so a slow one (a
    // synchronous standby replaying an index build) failed the start though the migration had
    // committed. Here a deferred trigger makes the commit slow. @see .scratch/diff17 finding 10
    it("reports the migration it committed instead of failing the start", async () => {
      const admin = pool();
      await admin.query(`CREATE SCHEMA ${schema}`);
      await admin.query(
        `CREATE TABLE ${schema}.schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at bigint NOT NULL)`,
      );
      await admin.query(`
        CREATE FUNCTION ${schema}.slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN IF NEW.version = 1 THEN PERFORM pg_sleep(${(POSTGRES_STATEMENT_TIMEOUT_MS + 2_000) / 1000}); END IF; RETURN NULL; END $$`);
      await admin.query(`
        CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON ${schema}.schema_migrations
        DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ${schema}.slow_commit()`);
      expect(await migratePostgres(admin, schema)).toEqual(
        POSTGRES_MIGRATIONS.map((migration) => migration.version),
      );
    }, 30_000);
  });
}
