import type { Logger, SendLog, SendLogEntry } from "../../core/ports.js";
import { SEND_LOG_COLUMNS, type SendLogRow, sendLogEntryFromRow, sendLogRowValues } from "../rows.js";
import { SendLogBuffer, startSendLogWriter } from "../send-log-buffer.js";
import type { GroupCommit } from "./group-commit.js";
import type { SqliteDatabase } from "./sqlite-database.js";
import { isStoreUnavailable } from "./sqlite-faults.js";

/**
 * The send log over SQLite: `record` buffers; a timer (or a full batch) writes the buffer in the
 * group commit, so it shares the requests' commit and, like them, never sleeps on the event loop
 * waiting for the write lock.
 */
export function createSqliteSendLog(
  db: SqliteDatabase,
  group: GroupCommit,
  logger: Logger,
): SendLog & { close(): Promise<void> } {
  // Positional parameters: binding named ones per row showed in a flood's profile.
  const insert = db.prepare(`
    INSERT INTO send_log (${SEND_LOG_COLUMNS.join(", ")})
    VALUES (${SEND_LOG_COLUMNS.map(() => "?").join(", ")})`);
  const select = db.prepare(`
    SELECT * FROM send_log WHERE app_id = @appId AND at >= @since AND (@decision IS NULL OR decision = @decision)
    ORDER BY at DESC, id DESC LIMIT @limit`);
  const buffer = new SendLogBuffer();
  const writeAll = (entries: SendLogEntry[]) => {
    for (const entry of entries) {
      insert.run(...sendLogRowValues(entry));
    }
  };
  const writer = startSendLogWriter({
    buffer,
    write: (entries) => group.run(() => writeAll(entries)),
    // The group turns the file's failures (full, I/O, locked past the busy timeout) into these.
    storeFailed: isStoreUnavailable,
    logger,
  });
  const { flush } = writer;

  return {
    record(entry) {
      // On the next turn: the records of this one join the batch; the buffer, not the group's
      // queue, is what caps memory under a flood.
      if (buffer.record(entry)) setImmediate(() => void flush());
    },
    async query(filter) {
      await flush();
      const rows = select.all({
        appId: filter.appId,
        since: filter.sinceMs ?? 0,
        decision: filter.decision ?? null,
        limit: filter.limit,
      }) as SendLogRow[];
      return rows.map(sendLogEntryFromRow);
    },
    flush,
    close: writer.close,
  };
}
