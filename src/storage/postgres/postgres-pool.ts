import pg from "pg";
import type { Logger } from "../../core/ports.js";

// Opening a connection to a reachable PostgreSQL takes milliseconds; waiting longer only holds the
// request (and its 503) hostage to an outage.
export const POSTGRES_CONNECT_TIMEOUT_MS = 2_000;
// Every statement on the request path is a key lookup or a small insert; one running this long
// means the database is stuck, and the caller is better served by a 503. The server cancels the
// statement first; the client's own timeout, a second later, catches a connection that went
// silent. A commit can still outlast both (PostgreSQL stops the statement's timer before it
// commits), so the send path takes a silent connection for an unknown outcome, never for a
// failure (cluster-verification-store.ts).
export const POSTGRES_STATEMENT_TIMEOUT_MS = 5_000;
const POSTGRES_CLIENT_TIMEOUT_MS = POSTGRES_STATEMENT_TIMEOUT_MS + 1_000;
// Idle connections are closed after this, so a pool sized for a burst shrinks back.
const IDLE_TIMEOUT_MS = 30_000;

const INT8_OID = 20;

// bigint columns hold millisecond timestamps and counts, all far below 2^53: read them as numbers
// (pg returns int8 as strings by default). Scoped to our pools, not pg's global type table.
const types = {
  getTypeParser(oid: number, format?: "text" | "binary") {
    if (oid === INT8_OID && format !== "binary") return (value: string) => Number(value);
    return format === "binary" ? pg.types.getTypeParser(oid, "binary") : pg.types.getTypeParser(oid, "text");
  },
} as pg.CustomTypesConfig;

export interface PostgresPoolOptions {
  url: string;
  /** connections per process */
  poolSize: number;
  /** a schema to work in (created by the migrator); default: the server's search_path */
  schema?: string | undefined;
  /**
   * Commit without waiting for the WAL flush (`synchronous_commit = off`). Only for writes whose
   * loss in a database crash is harmless: see the background pool in storage/cluster/index.ts.
   */
  asyncCommit?: boolean;
  logger: Logger;
}

/**
 * A connection pool that fails fast and never crashes the process: a connection lost while idle
 * (database restart, network cut) is logged and replaced on next use, and every query has a
 * timeout, so an outage turns into 503s and service resumes by itself when PostgreSQL returns.
 */
export function createPostgresPool(options: PostgresPoolOptions): pg.Pool {
  if (options.schema !== undefined && !/^[a-z_][a-z0-9_]{0,62}$/.test(options.schema)) {
    throw new Error(`invalid schema name ${options.schema}`);
  }
  const pool = new pg.Pool({
    connectionString: options.url,
    max: options.poolSize,
    connectionTimeoutMillis: POSTGRES_CONNECT_TIMEOUT_MS,
    query_timeout: POSTGRES_CLIENT_TIMEOUT_MS,
    statement_timeout: POSTGRES_STATEMENT_TIMEOUT_MS,
    idleTimeoutMillis: IDLE_TIMEOUT_MS,
    keepAlive: true,
    types,
    ...(startupOptions(options) ? { options: startupOptions(options) } : {}),
  });
  let down = false;
  // An idle client's connection error is emitted on the pool; without a listener it would crash
  // the process. The pool has already discarded that client.
  pool.on("error", (error) => {
    if (down) return;
    down = true;
    options.logger.warn({ err: error.message }, "postgres connection lost; reconnecting on demand");
  });
  pool.on("connect", (client) => {
    // A client's own error events (rare: between queries) must not crash the process either.
    client.on("error", () => {});
    if (!down) return;
    down = false;
    options.logger.info({}, "postgres reachable again");
  });
  return pool;
}

// Session settings sent at connection start, so they cost nothing per query.
function startupOptions(options: PostgresPoolOptions): string {
  return [
    options.schema ? `-c search_path=${options.schema}` : "",
    options.asyncCommit ? "-c synchronous_commit=off" : "",
  ]
    .filter(Boolean)
    .join(" ");
}

/** SQLSTATE of a unique violation. */
export const UNIQUE_VIOLATION = "23505";

export function isUniqueViolation(error: unknown): boolean {
  return (error as { code?: string } | null)?.code === UNIQUE_VIOLATION;
}
