import type { Logger } from "../../core/ports.js";
import { createPostgresPool } from "./postgres-pool.js";

const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };

/**
 * Dev mode's generated secret, kept in PostgreSQL for every process of a cluster (each with its own
 * data dir, each generating its own, a code sent through one process failed its check on another):
 * `candidate` when no process has kept one yet, else the one kept. The schema must be migrated (to
 * version 12). One short-lived connection, at start only.
 */
export async function sharedDevSecret(
  database: { url: string; schema?: string | undefined },
  candidate: string,
  nowMs: number,
): Promise<string> {
  const pool = createPostgresPool({
    url: database.url,
    poolSize: 1,
    schema: database.schema,
    logger: silentLogger,
  });
  try {
    await pool.query("INSERT INTO dev_secret (secret, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING", [
      candidate,
      nowMs,
    ]);
    // A statement of its own: one reading in the INSERT's would miss a row another process's
    // insert (which the ON CONFLICT waited for) committed after that statement began.
    const { rows } = await pool.query<{ secret: string }>("SELECT secret FROM dev_secret");
    const secret = rows[0]?.secret;
    if (secret === undefined) throw new Error("dev_secret holds no row after its insert");
    return secret;
  } finally {
    await pool.end();
  }
}
