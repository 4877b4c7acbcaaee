import type { DevInbox } from "../../core/ports.js";
import { type DevInboxRow, devInboxMessageFromRow } from "../rows.js";
import type { GroupCommit } from "./group-commit.js";
import type { SqliteDatabase } from "./sqlite-database.js";

/** The dev inbox (dev mode only): the one place a plaintext code rests, by design. */
export function createSqliteDevInbox(db: SqliteDatabase, group: GroupCommit): DevInbox {
  // The id is the outbox message id: a redelivery (at least once, after a crash) is a no-op, the
  // way a provider honouring idempotency keys treats it, instead of a failure retried for ever.
  const insert = db.prepare(`
    INSERT OR IGNORE INTO dev_inbox (id, app_id, channel, recipient, subject, text, code, created_at)
    VALUES (@id, @appId, @channel, @to, @subject, @text, @code, @createdAtMs)`);
  // Any ASCII case of the address (SQLite's lower() folds only ASCII), by migration 12's index.
  const list = db.prepare(
    "SELECT * FROM dev_inbox WHERE lower(recipient) = lower(?) ORDER BY created_at DESC, rowid DESC LIMIT ?",
  );
  return {
    async add(message) {
      // Shares the delivery round's commit instead of one commit per message.
      await group.run(() => insert.run(message));
    },
    async list(to, limit) {
      const rows = list.all(to, limit) as DevInboxRow[];
      return rows.map(devInboxMessageFromRow);
    },
  };
}
