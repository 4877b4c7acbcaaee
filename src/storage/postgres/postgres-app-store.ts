import type pg from "pg";
import type { AppStore } from "../../core/ports.js";
import type { App } from "../../core/types.js";
import { apiKeyTaken, clientIdTaken } from "../sqlite/sqlite-app-store.js";

// Named statements are prepared once per connection and reused (DESIGN.md: re-preparing SQL on
// the request path is a defect).
const STATEMENTS = {
  byId: "SELECT data FROM apps WHERE id = $1",
  byClientId: "SELECT data FROM apps WHERE client_id = $1",
  byKey: "SELECT a.data FROM app_keys k JOIN apps a ON a.id = k.app_id WHERE k.key_hash = $1",
  list: "SELECT data FROM apps ORDER BY id",
  // One statement, so one atomic commit: upsert the app, drop keys it no longer has, add the keys
  // it has. The DELETE and the INSERT touch disjoint rows, as a CTE requires. Only keys the app
  // does not hold yet are inserted, without ON CONFLICT: one another app holds is a unique
  // violation that undoes the whole statement, so a key is refused, never moved.
  save: `
    WITH app AS (
      INSERT INTO apps (id, client_id, data) VALUES ($1, $2, $3)
      ON CONFLICT (id) DO UPDATE SET client_id = excluded.client_id, data = excluded.data
    ), dropped AS (
      DELETE FROM app_keys WHERE app_id = $1 AND key_hash <> ALL ($4::text[])
    )
    INSERT INTO app_keys (key_hash, app_id)
    SELECT wanted.key_hash, $1 FROM unnest($4::text[]) AS wanted (key_hash)
    WHERE NOT EXISTS (SELECT 1 FROM app_keys held WHERE held.key_hash = wanted.key_hash AND held.app_id = $1)`,
  clientIdHolder: "SELECT id FROM apps WHERE client_id = $1 AND id <> $2",
  keyHolder:
    "SELECT key_hash, app_id FROM app_keys WHERE key_hash = ANY ($1::text[]) AND app_id <> $2 LIMIT 1",
};

const UNIQUE_VIOLATION = "23505";
// A unique violation with no other app holding the key or client id: another process saved this
// same app at the same moment (servers syncing the config file at startup), and a retry finds its
// keys as this app's own.
const SAVE_TRIES = 3;

/** Apps as JSON documents in PostgreSQL (like the SQLite store), with their API key hashes indexed. */
export function createPostgresAppStore(pool: pg.Pool): AppStore {
  const one = async (name: "byId" | "byClientId" | "byKey", value: string): Promise<App | null> => {
    const { rows } = await pool.query<{ data: App }>({
      name: `vd_apps_${name}`,
      text: STATEMENTS[name],
      values: [value],
    });
    return rows[0]?.data ?? null;
  };
  /** Why a save hit a unique violation: the refusal to throw, or undefined when nothing is taken. */
  const conflict = async (app: App, hashes: string[]) => {
    const client = await pool.query<{ id: string }>({
      name: "vd_apps_clientIdHolder",
      text: STATEMENTS.clientIdHolder,
      values: [app.clientId, app.id],
    });
    const clientHolder = client.rows[0];
    if (clientHolder) return clientIdTaken(app.clientId, clientHolder.id);
    const key = await pool.query<{ key_hash: string; app_id: string }>({
      name: "vd_apps_keyHolder",
      text: STATEMENTS.keyHolder,
      values: [hashes, app.id],
    });
    const keyHolder = key.rows[0];
    return keyHolder && apiKeyTaken(keyHolder.key_hash, keyHolder.app_id);
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
      const hashes = [...new Set(app.apiKeyHashes)];
      for (let tries = 1; ; tries++) {
        try {
          await pool.query({
            name: "vd_apps_save",
            text: STATEMENTS.save,
            values: [app.id, app.clientId, JSON.stringify(app), hashes],
          });
          return;
        } catch (error) {
          if ((error as { code?: unknown }).code !== UNIQUE_VIOLATION || tries === SAVE_TRIES) throw error;
          const refusal = await conflict(app, hashes);
          if (refusal) throw refusal;
        }
      }
    },
  };
}
