import type pg from "pg";
import type { Logger, SendLog, SendLogEntry } from "../../core/ports.js";
import { SEND_LOG_COLUMNS, type SendLogRow, sendLogEntryFromRow, sendLogRowValues } from "../rows.js";
import { SendLogBuffer, startSendLogWriter } from "../send-log-buffer.js";

// at is a bigint, decision_count an integer, the rest text.
const TYPES = ["bigint", ...Array.from({ length: SEND_LOG_COLUMNS.length - 2 }, () => "text"), "integer"];
// One multi-row INSERT per batch via unnest (see postgres-outbox-writer.ts).
const INSERT = `
  INSERT INTO send_log (${SEND_LOG_COLUMNS.join(", ")})
  SELECT * FROM unnest(${TYPES.map((type, index) => `$${index + 1}::${type}[]`).join(", ")})`;
// The columns are named, never `*` (postgres-columns.ts).
const SELECT = `
  SELECT ${SEND_LOG_COLUMNS.join(", ")} FROM send_log WHERE app_id = $1 AND at >= $2 AND ($3::text IS NULL OR decision = $3)
  ORDER BY at DESC, id DESC LIMIT $4`;

/** The send log in PostgreSQL: `record` buffers; a timer (or a full batch) writes one INSERT. */
export function createPostgresSendLog(pool: pg.Pool, logger: Logger): SendLog & { close(): Promise<void> } {
  // Each batch is a round trip of its own here: fewer, larger ones.
  const buffer = new SendLogBuffer(500);

  const write = async (entries: SendLogEntry[]) => {
    const columns: unknown[][] = SEND_LOG_COLUMNS.map(() => []);
    for (const entry of entries) {
      const row = sendLogRowValues(entry);
      row.forEach((value, index) => {
        // PostgreSQL stores no NUL in text, and one would fail the whole batch, every app's
        // entries with it: the HTTP faces refuse NUL, but an entry's text need not come from them.
        columns[index]?.push(typeof value === "string" ? value.replaceAll("\0", "\uFFFD") : value);
      });
    }
    await pool.query({ name: "vd_send_log_insert", text: INSERT, values: columns });
  };
  const writer = startSendLogWriter({ buffer, write, storeFailed: databaseFailed, logger });
  const { flush } = writer;

  return {
    record(entry) {
      if (buffer.record(entry)) setImmediate(flush);
    },
    async query(filter) {
      await flush();
      const { rows } = await pool.query<SendLogRow>({
        name: "vd_send_log_query",
        text: SELECT,
        values: [filter.appId, filter.sinceMs ?? 0, filter.decision ?? null, filter.limit],
      });
      return rows.map(sendLogEntryFromRow);
    },
    flush,
    close: writer.close,
  };
}

// SQLSTATE classes that blame the rows sent (22 data exception, 23 integrity constraint): such a
// batch would fail every time. Anything else (no connection, a timeout, a server shutting down or
// out of resources: class 08, 53, 57, or no SQLSTATE at all) is the database's: tried again.
const REFUSED_FOR_ITS_ROWS = /^(22|23)/;

/** True when a failed write is worth trying again with the same rows. */
function databaseFailed(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return !(typeof code === "string" && REFUSED_FOR_ITS_ROWS.test(code));
}
