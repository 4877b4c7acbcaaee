import pg from "pg";
import { describe, expect, it } from "vitest";
import { backendMissing, dropSchema, probePostgres, uniqueName } from "../../../test/cluster/backends.js";
import { poolOnOwnSchema } from "../../../test/cluster/schema-pool.js";
import { POSTGRES_MIGRATIONS } from "../migrations/postgres/index.js";
import { migratePostgres } from "./postgres-migrator.js";
import { createPostgresPool, POSTGRES_STATEMENT_TIMEOUT_MS } from "./postgres-pool.js";

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

  describe("migratePostgres: a table it alters locked by a long transaction", () => {
    const { schema, pool } = poolOnOwnSchema(url, "pgmiglocked");

    // Regression: the ALTER TABLE waited for the lock under a 10-minute statement timeout, and
    // every query on the table queued behind it (a plain SELECT on sessions was cancelled after
    // 8 s) while a pg_dump or a stuck client held it. @see .scratch/rev-storage NOTES.md
    it("waits briefly, rolls back, tries again, and leaves the table's queries running meanwhile", async () => {
      const admin = pool();
      // The schema as the first migration left it: the second alters send_log.
      const [first] = POSTGRES_MIGRATIONS;
      if (!first || !POSTGRES_MIGRATIONS[1]?.sql.includes("ALTER TABLE send_log")) {
        throw new Error("this test expects migration 2 to alter send_log");
      }
      await admin.query(`CREATE SCHEMA ${schema}`);
      await admin.query(first.sql);
      await admin.query(
        "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at bigint NOT NULL)",
      );
      await admin.query("INSERT INTO schema_migrations VALUES (1, $1, 0)", [first.name]);
      // A long transaction that read send_log, as pg_dump does, holds its lock until it ends.
      const dump = new pg.Client({ connectionString: url });
      const reader = new pg.Client({ connectionString: url });
      await Promise.all([dump.connect(), reader.connect()]);
      const warnings: { object: Record<string, unknown>; message: string | undefined }[] = [];
      try {
        const dumpPid = (await dump.query<{ pid: number }>("SELECT pg_backend_pid() AS pid")).rows[0]?.pid;
        await dump.query("BEGIN");
        await dump.query(`SELECT count(*) FROM ${schema}.send_log`);
        const migrating = migratePostgres(admin, schema, {
          lockTimeoutMs: 300,
          retryPauseMs: 200,
          logger: {
            warn: (object, message) => warnings.push({ object: object as Record<string, unknown>, message }),
          },
        });
        // Queries on the table keep being answered, after a lock timeout at most.
        const readAfter = async () => {
          const startedAt = Date.now();
          await reader.query({
            text: `SELECT count(*) FROM ${schema}.send_log`,
            query_timeout: 5_000,
          } as pg.QueryConfig);
          return Date.now() - startedAt;
        };
        for (let read = 0; read < 8; read++) {
          await new Promise((resolve) => setTimeout(resolve, 150));
          expect(await readAfter()).toBeLessThan(1_000);
        }
        expect(warnings.length).toBeGreaterThanOrEqual(2);
        expect(warnings[0]?.object).toMatchObject({
          attempt: 1,
          waitingFor: `migration 2 (${POSTGRES_MIGRATIONS[1]?.name})`,
          lockedBy: [expect.objectContaining({ pid: dumpPid, tables: ["send_log"] })],
        });
        await dump.query("COMMIT");
        expect(await migrating).toEqual(POSTGRES_MIGRATIONS.slice(1).map((migration) => migration.version));
      } finally {
        await Promise.all([dump.end(), reader.end()]);
      }
    }, 30_000);
  });

  describe("migratePostgres: a role that owns its schema but may not create one", () => {
    // Regression: CREATE SCHEMA IF NOT EXISTS checks the database's CREATE privilege before it
    // looks for the schema, so VERIFYD_DATABASE_SCHEMA needed it even for a schema that existed.
    // @see .scratch/rev-storage NOTES.md
    it("migrates the schema it was given", async () => {
      const role = uniqueName("pgmigrole");
      const schema = uniqueName("pgmigowned");
      const admin = new pg.Client({ connectionString: url });
      await admin.connect();
      const roleUrl = new URL(url);
      roleUrl.username = role;
      roleUrl.password = "migrate-test-password";
      try {
        await admin.query(`CREATE ROLE ${role} LOGIN PASSWORD 'migrate-test-password'`);
        await admin.query(`CREATE SCHEMA ${schema} AUTHORIZATION ${role}`);
        const { rows } = await admin.query<{ create: boolean }>(
          "SELECT has_database_privilege($1, current_database(), 'CREATE') AS create",
          [role],
        );
        expect(rows[0]?.create).toBe(false);
        const silent = { debug() {}, info() {}, warn() {}, error() {} };
        const rolePool = createPostgresPool({ url: roleUrl.href, poolSize: 2, schema, logger: silent });
        try {
          expect(await migratePostgres(rolePool, schema)).toEqual(
            POSTGRES_MIGRATIONS.map((migration) => migration.version),
          );
        } finally {
          await rolePool.end();
        }
      } finally {
        await dropSchema(url, schema);
        await admin.query(`DROP ROLE IF EXISTS ${role}`);
        await admin.end();
      }
    }, 30_000);
  });
}
