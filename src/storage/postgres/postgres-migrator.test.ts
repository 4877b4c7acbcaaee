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
}
