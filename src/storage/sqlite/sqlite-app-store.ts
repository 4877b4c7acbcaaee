import { OtpError } from "../../core/errors.js";
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
    clientIdHolder: db.prepare<[string, string], { id: string }>(
      "SELECT id FROM apps WHERE client_id = ? AND id <> ?",
    ),
    keyHolder: db.prepare<[string], { app_id: string }>("SELECT app_id FROM app_keys WHERE key_hash = ?"),
    // Any conflict: on the id, or on the client id another app has.
    insert: db.prepare("INSERT INTO apps (id, client_id, data) VALUES (?, ?, ?) ON CONFLICT DO NOTHING"),
    upsert: db.prepare(
      "INSERT INTO apps (id, client_id, data) VALUES (?, ?, ?) ON CONFLICT (id) DO UPDATE SET client_id = excluded.client_id, data = excluded.data",
    ),
    deleteKeys: db.prepare("DELETE FROM app_keys WHERE app_id = ?"),
    // After deleteKeys, a key that is still there is another app's: it is refused, never moved.
    insertKey: db.prepare("INSERT INTO app_keys (key_hash, app_id) VALUES (?, ?) ON CONFLICT DO NOTHING"),
  };
  const parse = (row: unknown): App | null =>
    row ? (JSON.parse((row as { data: string }).data) as App) : null;
  const insertKeys = (app: App) => {
    for (const hash of new Set(app.apiKeyHashes)) {
      if (statements.insertKey.run(hash, app.id).changes === 0) {
        throw apiKeyTaken(hash, statements.keyHolder.get(hash)?.app_id ?? "?");
      }
    }
  };
  // Each runs under an immediate transaction, so the checks and the writes see one state; a
  // refusal rolls the whole write back.
  const save = db.transaction((app: App) => {
    const holder = statements.clientIdHolder.get(app.clientId, app.id);
    if (holder) throw clientIdTaken(app.clientId, holder.id);
    statements.upsert.run(app.id, app.clientId, JSON.stringify(app));
    statements.deleteKeys.run(app.id);
    insertKeys(app);
  });
  const create = db.transaction((app: App): boolean => {
    if (statements.insert.run(app.id, app.clientId, JSON.stringify(app)).changes === 0) return false;
    insertKeys(app);
    return true;
  });
  const update = db.transaction((id: string, change: (app: App) => App): App | null => {
    const stored = parse(statements.byId.get(id));
    if (!stored) return null;
    const changed = change(stored);
    if (changed.id !== id) throw new Error(`an update of app "${id}" may not change its id`);
    save(changed);
    return changed;
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
    async create(app) {
      return create.immediate(app);
    },
    async update(id, change) {
      return update.immediate(id, change);
    },
  };
}

/**
 * The refusal of a save whose client id another app has. An OtpError, so it passes a backend's
 * fail-closed wrapper as it is; `field` names the app's field at fault for the caller's message.
 * Shared with the PostgreSQL store, so both backends refuse in the same words.
 */
export function clientIdTaken(clientId: string, holder: string): OtpError {
  return new OtpError("VALIDATION_FAILED", {
    message: `client id "${clientId}" already belongs to app "${holder}"`,
    details: { field: "clientId" },
  });
}

/** The refusal of a save listing an API key another app has (named by a prefix of its hash). */
export function apiKeyTaken(hash: string, holder: string): OtpError {
  return new OtpError("VALIDATION_FAILED", {
    message: `an API key (SHA-256 ${hash.slice(0, 12)}…) already belongs to app "${holder}"`,
    details: { field: "apiKeys" },
  });
}
