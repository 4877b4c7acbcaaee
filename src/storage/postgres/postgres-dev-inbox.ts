import type pg from "pg";
import type { DevInbox, DevInboxMessage } from "../../core/ports.js";
import { type DevInboxRow, devInboxMessageFromRow } from "../rows.js";
import { columnsOf, createBatcher } from "./postgres-batcher.js";
import { columnList } from "./postgres-columns.js";

// Batched like the outbox (the dev sender writes one message per delivery, and a worker round
// delivers many at once); ORDER BY keeps seq in the order the messages were added. The id is the
// outbox message id: a redelivery (at least once, after a crash) is a no-op, like SQLite's.
const INSERT = `
  INSERT INTO dev_inbox (id, app_id, channel, recipient, subject, text, code, created_at)
  SELECT id, app_id, channel, recipient, subject, text, code, created_at
  FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::bigint[])
    WITH ORDINALITY AS t(id, app_id, channel, recipient, subject, text, code, created_at, position)
  ORDER BY position
  ON CONFLICT (id) DO NOTHING`;
const MAX_BATCH = 500;
// Any ASCII case of the address (migration 8's index); seq breaks ties in insertion order, like
// SQLite's rowid. The columns are named, never `*` (postgres-columns.ts).
const LIST = `
  SELECT ${columnList<DevInboxRow>({
    id: true,
    app_id: true,
    channel: true,
    recipient: true,
    subject: true,
    text: true,
    code: true,
    created_at: true,
  })}
  FROM dev_inbox WHERE lower(recipient COLLATE "C") = lower($1 COLLATE "C")
  ORDER BY created_at DESC, seq DESC LIMIT $2`;

/** The dev inbox (dev mode only) in PostgreSQL, shared by every process of a cluster. */
export function createPostgresDevInbox(pool: pg.Pool): DevInbox {
  const batcher = createBatcher<DevInboxMessage>(
    (messages) =>
      pool.query({
        name: "vd_dev_inbox_add",
        text: INSERT,
        values: columnsOf(
          messages.map((message) => [
            message.id,
            message.appId,
            message.channel,
            message.to,
            message.subject,
            message.text,
            message.code,
            message.createdAtMs,
          ]),
          8,
        ),
      }),
    { maxConcurrent: 2, maxItems: MAX_BATCH },
  );
  return {
    add: (message) => batcher.add(message),
    async list(to, limit) {
      const { rows } = await pool.query<DevInboxRow>({
        name: "vd_dev_inbox_list",
        text: LIST,
        values: [to, limit],
      });
      return rows.map(devInboxMessageFromRow);
    },
  };
}
