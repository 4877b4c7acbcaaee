import type { Logger, SendLog, SendLogEntry } from "../../core/ports.js";
import { type SendLogRow, sendLogEntryFromRow } from "../rows.js";
import type { SqliteDatabase } from "./sqlite-database.js";

// Entries are written in batches, off the request path: refusals under attack stay cheap.
const FLUSH_INTERVAL_MS = 1_000;
const FLUSH_BATCH_ENTRIES = 500;
// Under a flood the buffer is capped; the oldest unwritten entries are dropped and counted.
const MAX_BUFFERED_ENTRIES = 50_000;

/** The send log over SQLite: `record` buffers, a timer (or a full batch) writes one transaction. */
export function createSqliteSendLog(db: SqliteDatabase, logger: Logger): SendLog & { close(): void } {
  const insert = db.prepare(`
    INSERT INTO send_log (at, app_id, face, channel, recipient, country, ip, device_id, purpose, decision, reason, shadowed, verification_id)
    VALUES (@atMs, @appId, @face, @channel, @to, @country, @ip, @deviceId, @purpose, @decision, @reason, @shadowed, @verificationId)`);
  const select = db.prepare(`
    SELECT * FROM send_log WHERE app_id = @appId AND at >= @since AND (@decision IS NULL OR decision = @decision)
    ORDER BY at DESC, id DESC LIMIT @limit`);
  let buffer: SendLogEntry[] = [];
  let dropped = 0;
  const writeAll = db.transaction((entries: SendLogEntry[]) => {
    for (const entry of entries) {
      insert.run({
        channel: null,
        to: null,
        purpose: null,
        country: null,
        ip: null,
        deviceId: null,
        reason: null,
        verificationId: null,
        ...entry,
        shadowed: entry.shadowed ? entry.shadowed.join(",") : null,
      });
    }
  });
  const flush = () => {
    if (buffer.length === 0) return;
    const entries = buffer;
    buffer = [];
    try {
      writeAll(entries);
    } catch (error) {
      logger.error({ err: error, entries: entries.length }, "send log write failed");
    }
    if (dropped > 0) {
      logger.warn({ dropped }, "send log buffer overflowed; oldest entries dropped");
      dropped = 0;
    }
  };
  const timer = setInterval(flush, FLUSH_INTERVAL_MS);
  timer.unref();

  return {
    record(entry) {
      if (buffer.length >= MAX_BUFFERED_ENTRIES) {
        buffer.shift();
        dropped += 1;
      }
      buffer.push(entry);
      if (buffer.length >= FLUSH_BATCH_ENTRIES) setImmediate(flush);
    },
    async query(filter) {
      flush();
      const rows = select.all({
        appId: filter.appId,
        since: filter.sinceMs ?? 0,
        decision: filter.decision ?? null,
        limit: filter.limit,
      }) as SendLogRow[];
      return rows.map(sendLogEntryFromRow);
    },
    async flush() {
      flush();
    },
    close() {
      clearInterval(timer);
      flush();
    },
  };
}
