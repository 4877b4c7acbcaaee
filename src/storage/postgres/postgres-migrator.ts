import type pg from "pg";
import type { Logger } from "../../core/ports.js";
import { POSTGRES_MIGRATIONS } from "../migrations/postgres/index.js";
import { requireServableSchema } from "../migrations/schema-version.js";
import { createPostgresPool } from "./postgres-pool.js";

// DDL on an empty schema is quick, but a migration may one day rewrite a big table.
const MIGRATION_TIMEOUT_MS = 10 * 60_000;
// An ALTER TABLE waits for every lock on its table, and while it waits every later query on that
// table queues behind it: a migration stuck behind a long transaction (pg_dump, a stuck client)
// would stall a running cluster's requests. So its statements wait this long at most for a lock;
// the migration then rolls back (the queries behind it go on) and is tried again after a pause
// that doubles, until MIGRATION_TIMEOUT_MS has passed.
const MIGRATION_LOCK_TIMEOUT_MS = 3_000;
const FIRST_RETRY_PAUSE_MS = 1_000;
const LONGEST_RETRY_PAUSE_MS = 30_000;
/** SQLSTATE lock_not_available: a statement waited out lock_timeout. */
const LOCK_NOT_AVAILABLE = "55P03";

// pg reads a per-query `query_timeout` (its types omit it): the pool's short request-path timeout
// must not cut a long migration, nor the commit of one (a commit that outlives the client's
// timeout has still happened, and a start that gives up on it would fail for nothing).
function slowQuery(text: string): pg.QueryConfig & { query_timeout: number } {
  return { text, query_timeout: MIGRATION_TIMEOUT_MS };
}

export interface MigrateOptions {
  /** told each time a migration found a table locked and will try again */
  logger?: Pick<Logger, "warn">;
  /** how long a statement waits for a table's lock (default MIGRATION_LOCK_TIMEOUT_MS) */
  lockTimeoutMs?: number;
  /** the first pause before trying again (default FIRST_RETRY_PAUSE_MS) */
  retryPauseMs?: number;
}

/**
 * Applies the migrations not yet recorded in `schema_migrations`; returns the versions applied.
 * Everything runs in one transaction behind an advisory lock named after the schema, so several
 * processes starting at once (or the CLI next to a server) migrate exactly once, and a failed
 * migration leaves nothing half done. A migration that finds a table locked longer than
 * `lockTimeoutMs` is rolled back and tried again (see MIGRATION_LOCK_TIMEOUT_MS).
 */
export async function migratePostgres(
  pool: pg.Pool,
  schema?: string,
  options: MigrateOptions = {},
): Promise<number[]> {
  const lockTimeoutMs = options.lockTimeoutMs ?? MIGRATION_LOCK_TIMEOUT_MS;
  const giveUpAt = Date.now() + MIGRATION_TIMEOUT_MS;
  let pauseMs = options.retryPauseMs ?? FIRST_RETRY_PAUSE_MS;
  for (let attempt = 1; ; attempt++) {
    const progress: MigrationProgress = { migration: null };
    try {
      return await migrateOnce(pool, schema, lockTimeoutMs, progress);
    } catch (error) {
      if ((error as { code?: unknown }).code !== LOCK_NOT_AVAILABLE) throw error;
      const waitingFor = progress.migration
        ? `migration ${progress.migration.version} (${progress.migration.name})`
        : "the migrations table";
      if (Date.now() + pauseMs > giveUpAt) {
        (error as Error).message +=
          `: ${waitingFor} still found a table locked after ${attempt} tries in ${MIGRATION_TIMEOUT_MS / 60_000} minutes`;
        throw error;
      }
      options.logger?.warn(
        {
          attempt,
          waitingFor,
          lockedBy: await longTransactionsOnSchema(pool, lockTimeoutMs),
          retryInMs: pauseMs,
        },
        "postgres migration found a table locked; rolled back, trying again",
      );
      await new Promise((resolve) => setTimeout(resolve, pauseMs));
      pauseMs = Math.min(2 * pauseMs, LONGEST_RETRY_PAUSE_MS);
    }
  }
}

/** The migration being applied, for the log when it fails. */
interface MigrationProgress {
  migration: { version: number; name: string } | null;
}

async function migrateOnce(
  pool: pg.Pool,
  schema: string | undefined,
  lockTimeoutMs: number,
  progress: MigrationProgress,
): Promise<number[]> {
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
    // From here on a table lock is waited for briefly (the advisory lock above is not a table's).
    await client.query(`SET LOCAL lock_timeout = ${Math.max(1, Math.round(lockTimeoutMs))}`);
    // CREATE SCHEMA IF NOT EXISTS needs CREATE on the database even when the schema exists, which
    // a role given a schema of its own need not have.
    if (schema) {
      const existing = await client.query("SELECT 1 FROM pg_namespace WHERE nspname = $1", [schema]);
      if (existing.rowCount === 0) await client.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
    }
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
      progress.migration = migration;
      await client.query(slowQuery(migration.sql));
      await client.query("INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)", [
        migration.version,
        migration.name,
        Date.now(),
      ]);
      done.push(migration.version);
    }
    progress.migration = null;
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
 * Sessions whose transactions, older than `olderThanMs`, hold locks on tables of the schema the
 * pool works in: what a migration that found a table locked most likely waits for.
 */
async function longTransactionsOnSchema(pool: pg.Pool, olderThanMs: number): Promise<object[]> {
  try {
    const { rows } = await pool.query(
      `SELECT a.pid, a.usename AS user, a.application_name, a.client_addr, a.state,
              extract(epoch FROM now() - a.xact_start)::integer AS transaction_seconds,
              left(a.query, 200) AS query, array_agg(DISTINCT c.relname::text) AS tables
         FROM pg_locks l
         JOIN pg_class c ON c.oid = l.relation
         JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE l.granted AND c.relkind IN ('r', 'p') AND c.relnamespace = current_schema()::regnamespace
          AND a.pid <> pg_backend_pid() AND a.xact_start < now() - make_interval(secs => $1)
        GROUP BY a.pid, a.usename, a.application_name, a.client_addr, a.state, a.xact_start, a.query
        LIMIT 10`,
      [olderThanMs / 1000],
    );
    return rows;
  } catch {
    // Only for the log: a role that cannot see other sessions sees none.
    return [];
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
export async function migratePostgresDatabase(
  url: string,
  schema?: string,
  options: MigrateOptions = {},
): Promise<number[]> {
  const pool = createPostgresPool({
    url,
    poolSize: 1,
    schema,
    logger: { debug() {}, info() {}, warn() {}, error() {} },
  });
  try {
    return await migratePostgres(pool, schema, options);
  } finally {
    await pool.end();
  }
}
