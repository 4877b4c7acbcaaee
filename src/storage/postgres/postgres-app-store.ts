import type pg from "pg";
import type { AppStore } from "../../core/ports.js";
import type { App } from "../../core/types.js";

// Named statements are prepared once per connection and reused (DESIGN.md: re-preparing SQL on
// the request path is a defect).
const STATEMENTS = {
  byId: "SELECT data FROM apps WHERE id = $1",
  byClientId: "SELECT data FROM apps WHERE client_id = $1",
  byKey: "SELECT a.data FROM app_keys k JOIN apps a ON a.id = k.app_id WHERE k.key_hash = $1",
  list: "SELECT data FROM apps ORDER BY id",
  // One statement, so one atomic commit: upsert the app, drop keys it no longer has, add (or move
  // to it) the keys it has. The DELETE and the INSERT touch disjoint rows, as a CTE requires.
  save: `
    WITH app AS (
      INSERT INTO apps (id, client_id, data) VALUES ($1, $2, $3)
      ON CONFLICT (id) DO UPDATE SET client_id = excluded.client_id, data = excluded.data
    ), dropped AS (
      DELETE FROM app_keys WHERE app_id = $1 AND key_hash <> ALL ($4::text[])
    )
    INSERT INTO app_keys (key_hash, app_id) SELECT unnest($4::text[]), $1
    ON CONFLICT (key_hash) DO UPDATE SET app_id = excluded.app_id`,
};

/** Apps as JSON documents in PostgreSQL (like the SQLite store), with their API key hashes indexed. */
export function createPostgresAppStore(pool: pg.Pool): AppStore {
  const one = async (name: keyof typeof STATEMENTS, value: string): Promise<App | null> => {
    const { rows } = await pool.query<{ data: App }>({
      name: `vd_apps_${name}`,
      text: STATEMENTS[name],
      values: [value],
    });
    return rows[0]?.data ?? null;
  };
  return {
    get: (id) => one("byId", id),
    getByClientId: (clientId) => one("byClientId", clientId),
    getByApiKeyHash: (hash) => one("byKey", hash),
    async list() {
      const { rows } = await pool.query<{ data: App }>({ name: "vd_apps_list", text: STATEMENTS.list });
      return rows.map((row) => row.data);
    },
    async save(app) {
      await pool.query({
        name: "vd_apps_save",
        text: STATEMENTS.save,
        values: [app.id, app.clientId, JSON.stringify(app), [...new Set(app.apiKeyHashes)]],
      });
    },
  };
}
