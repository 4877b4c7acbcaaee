import type pg from "pg";
import { POSTGRES_MIGRATIONS } from "../migrations/postgres/index.js";
import { requireServableSchema } from "../migrations/schema-version.js";
import { createPostgresPool } from "./postgres-pool.js";

// DDL on an empty schema is quick, but a migration may one day rewrite a big table.
const MIGRATION_TIMEOUT_MS = 10 * 60_000;

// pg reads a per-query `query_timeout` (its types omit it): the pool's short request-path timeout
// must not cut a long migration, nor the commit of one (a commit that outlives the client's
// timeout has still happened, and a start that gives up on it would fail for nothing).
function slowQuery(text: string): pg.QueryConfig & { query_timeout: number } {
  return { text, query_timeout: MIGRATION_TIMEOUT_MS };
}

/**
 * Applies the migrations not yet recorded in `schema_migrations`; returns the versions applied.
 * Everything runs in one transaction behind an advisory lock named after the schema, so several
 * processes starting at once (or the CLI next to a server) migrate exactly once, and a failed
 * migration leaves nothing half done.
 */
export async function migratePostgres(pool: pg.Pool, schema?: string): Promise<number[]> {
  const client = await pool.connect();
  try {
    await client.query(`SET statement_timeout = ${MIGRATION_TIMEOUT_MS}`);
    await client.query("BEGIN");
    // Another process's migration holds the lock as long as it runs: wait for it as long too, or
    // this process fails to start while a long migration runs elsewhere (a rolling deploy).
    await client.query({
      ...slowQuery("SELECT pg_advisory_xact_lock(hashtext($1))"),
      values: [`verifyd migrate ${schema ?? ""}`],
    });
    if (schema) await client.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
    await client.query(
      "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at bigint NOT NULL)",
    );
    const { rows } = await client.query<{ version: number }>("SELECT version FROM schema_migrations");
    requireServableSchema(
      rows.map((row) => row.version),
      POSTGRES_MIGRATIONS,
      { migrated: true },
    );
    const applied = new Set(rows.map((row) => row.version));
    const done: number[] = [];
    for (const migration of POSTGRES_MIGRATIONS) {
      if (applied.has(migration.version)) continue;
      await client.query(slowQuery(migration.sql));
      await client.query("INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)", [
        migration.version,
        migration.name,
        Date.now(),
      ]);
      done.push(migration.version);
    }
    await client.query(slowQuery("COMMIT"));
    return done;
  } catch (error) {
    await client.query(slowQuery("ROLLBACK")).catch(() => {});
    throw error;
  } finally {
    await client.query(slowQuery("RESET statement_timeout")).catch(() => {});
    client.release();
  }
}

/**
 * For a server told not to migrate: throws unless the schema is exactly at, or past none of, the
 * versions this build knows (SchemaVersionMismatch).
 */
export async function requireMigratedPostgres(pool: pg.Pool): Promise<void> {
  let versions: number[];
  try {
    const { rows } = await pool.query<{ version: number }>("SELECT version FROM schema_migrations");
    versions = rows.map((row) => row.version);
  } catch (error) {
    // 42P01: no such table, a schema never migrated
    if ((error as { code?: string }).code !== "42P01") throw error;
    versions = [];
  }
  requireServableSchema(versions, POSTGRES_MIGRATIONS, { migrated: false });
}

/** `verifyd migrate` in cluster mode: one short-lived connection, then gone. */
export async function migratePostgresDatabase(url: string, schema?: string): Promise<number[]> {
  const pool = createPostgresPool({
    url,
    poolSize: 1,
    schema,
    logger: { debug() {}, info() {}, warn() {}, error() {} },
  });
  try {
    return await migratePostgres(pool, schema);
  } finally {
    await pool.end();
  }
}
