import type pg from "pg";
import type { AppStore } from "../../core/ports.js";
import type { App } from "../../core/types.js";
import { apiKeyTaken, clientIdTaken } from "../sqlite/sqlite-app-store.js";
import { isUniqueViolation } from "./postgres-pool.js";

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
  // Only when no app has the id and none the client id (ON CONFLICT without a target covers both
  // unique indexes, and waits for a create of the same id in flight); its keys only with the app.
  create: `
    WITH app AS (
      INSERT INTO apps (id, client_id, data) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING RETURNING id
    ), keys AS (
      INSERT INTO app_keys (key_hash, app_id)
      SELECT wanted.key_hash, app.id FROM app, unnest($4::text[]) AS wanted (key_hash)
    )
    SELECT count(*)::int AS created FROM app`,
  // The row stays locked until the update's transaction ends: other writes of the app wait for it.
  lock: "SELECT data FROM apps WHERE id = $1 FOR UPDATE",
  clientIdHolder: "SELECT id FROM apps WHERE client_id = $1 AND id <> $2",
  keyHolder:
    "SELECT key_hash, app_id FROM app_keys WHERE key_hash = ANY ($1::text[]) AND app_id <> $2 LIMIT 1",
};

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
  const conflict = async (app: App) => {
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
      values: [[...new Set(app.apiKeyHashes)], app.id],
    });
    const keyHolder = key.rows[0];
    return keyHolder && apiKeyTaken(keyHolder.key_hash, keyHolder.app_id);
  };
  const saveValues = (app: App) => [
    app.id,
    app.clientId,
    JSON.stringify(app),
    [...new Set(app.apiKeyHashes)],
  ];
  /**
   * After a failed save of `app` (try number `tries`): throws the refusal when another app holds
   * its client id or a key of it, the error when it is no unique violation or tries are spent, and
   * returns when the save is worth trying again.
   */
  const afterFailedSave = async (error: unknown, app: App | null, tries: number): Promise<void> => {
    if (!app || !isUniqueViolation(error) || tries === SAVE_TRIES) throw error;
    const refusal = await conflict(app);
    if (refusal) throw refusal;
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
      for (let tries = 1; ; tries++) {
        try {
          await pool.query({ name: "vd_apps_save", text: STATEMENTS.save, values: saveValues(app) });
          return;
        } catch (error) {
          await afterFailedSave(error, app, tries);
        }
      }
    },
    async create(app) {
      try {
        const { rows } = await pool.query<{ created: number }>({
          name: "vd_apps_create",
          text: STATEMENTS.create,
          values: saveValues(app),
        });
        return rows[0]?.created === 1;
      } catch (error) {
        // The app went in, but a key of it is another app's: the statement is undone whole.
        if (!isUniqueViolation(error)) throw error;
        throw (await conflict(app)) ?? error;
      }
    },
    async update(id, change) {
      for (let tries = 1; ; tries++) {
        let changed: App | null = null;
        const client = await pool.connect();
        try {
          await client.query("BEGIN");
          const { rows } = await client.query<{ data: App }>({
            name: "vd_apps_lock",
            text: STATEMENTS.lock,
            values: [id],
          });
          const stored = rows[0]?.data;
          if (stored) {
            changed = change(stored);
            if (changed.id !== id) throw new Error(`an update of app "${id}" may not change its id`);
            await client.query({ name: "vd_apps_save", text: STATEMENTS.save, values: saveValues(changed) });
          }
          await client.query("COMMIT");
          return changed;
        } catch (error) {
          await client.query("ROLLBACK").catch(() => {});
          await afterFailedSave(error, changed, tries);
        } finally {
          client.release();
        }
      }
    },
  };
}
