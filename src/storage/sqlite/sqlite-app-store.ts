import type { AppStore } from "../../core/ports.js";
import type { App } from "../../core/types.js";
import type { SqliteDatabase } from "./sqlite-database.js";

/** Apps as JSON documents: their shape grows with every face, and they are read through a cache. */
export function createSqliteAppStore(db: SqliteDatabase): AppStore {
  const statements = {
    byId: db.prepare("SELECT data FROM apps WHERE id = ?"),
    byClientId: db.prepare("SELECT data FROM apps WHERE client_id = ?"),
    byKey: db.prepare("SELECT a.data FROM app_keys k JOIN apps a ON a.id = k.app_id WHERE k.key_hash = ?"),
    list: db.prepare("SELECT data FROM apps ORDER BY id"),
    upsert: db.prepare(
      "INSERT INTO apps (id, client_id, data) VALUES (?, ?, ?) ON CONFLICT (id) DO UPDATE SET client_id = excluded.client_id, data = excluded.data",
    ),
    deleteKeys: db.prepare("DELETE FROM app_keys WHERE app_id = ?"),
    insertKey: db.prepare("INSERT OR REPLACE INTO app_keys (key_hash, app_id) VALUES (?, ?)"),
  };
  const parse = (row: unknown): App | null =>
    row ? (JSON.parse((row as { data: string }).data) as App) : null;
  const save = db.transaction((app: App) => {
    statements.upsert.run(app.id, app.clientId, JSON.stringify(app));
    statements.deleteKeys.run(app.id);
    for (const hash of app.apiKeyHashes) statements.insertKey.run(hash, app.id);
  });
  return {
    async get(id) {
      return parse(statements.byId.get(id));
    },
    async getByClientId(clientId) {
      return parse(statements.byClientId.get(clientId));
    },
    async getByApiKeyHash(hash) {
      return parse(statements.byKey.get(hash));
    },
    async list() {
      return statements.list.all().map((row) => parse(row) as App);
    },
    async save(app) {
      save.immediate(app);
    },
  };
}
