import type pg from "pg";
import { afterAll, beforeAll } from "vitest";
import { createPostgresPool } from "../../src/storage/postgres/postgres-pool.js";
import { dropSchema, uniqueName } from "./backends.js";

const silent = { debug() {}, info() {}, warn() {}, error() {} };

/**
 * For the enclosing `describe`: a pool on a PostgreSQL schema of its own (named after `label`),
 * opened before its tests and ended, with the schema dropped, after them.
 */
export function poolOnOwnSchema(
  url: string,
  label: string,
  poolSize = 2,
): { schema: string; pool(): pg.Pool } {
  const schema = uniqueName(label);
  let pool: pg.Pool | undefined;
  beforeAll(() => {
    pool = createPostgresPool({ url, poolSize, schema, logger: silent });
  });
  afterAll(async () => {
    await pool?.end();
    await dropSchema(url, schema);
  });
  return {
    schema,
    pool() {
      if (!pool) throw new Error("the pool opens before the tests");
      return pool;
    },
  };
}
