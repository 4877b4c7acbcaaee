import type pg from "pg";
import type { Logger, SendLog, SendLogEntry } from "../../core/ports.js";
import { type SendLogRow, sendLogEntryFromRow } from "../rows.js";

// Entries are written in batches, off the request path: refusals under attack stay cheap.
const FLUSH_INTERVAL_MS = 1_000;
const FLUSH_BATCH_ENTRIES = 500;
// Under a flood (or while PostgreSQL is down) the buffer is capped; the oldest entries are dropped
// and counted rather than growing the heap without bound.
const MAX_BUFFERED_ENTRIES = 50_000;

const COLUMNS = [
  "at",
  "app_id",
  "face",
  "channel",
  "recipient",
  "country",
  "ip",
  "device_id",
  "purpose",
  "decision",
  "reason",
  "shadowed",
  "verification_id",
] as const;
const TYPES = ["bigint", ...Array.from({ length: COLUMNS.length - 1 }, () => "text")];
// One multi-row INSERT per batch via unnest (see postgres-outbox-writer.ts).
const INSERT = `
  INSERT INTO send_log (${COLUMNS.join(", ")})
  SELECT * FROM unnest(${TYPES.map((type, index) => `$${index + 1}::${type}[]`).join(", ")})`;
const SELECT = `
  SELECT * FROM send_log WHERE app_id = $1 AND at >= $2 AND ($3::text IS NULL OR decision = $3)
  ORDER BY at DESC, id DESC LIMIT $4`;

/** The send log in PostgreSQL: `record` buffers; a timer (or a full batch) writes one INSERT. */
export function createPostgresSendLog(pool: pg.Pool, logger: Logger): SendLog & { close(): Promise<void> } {
  let buffer: SendLogEntry[] = [];
  let dropped = 0;
  let writing: Promise<void> = Promise.resolve();

  const write = async (entries: SendLogEntry[]) => {
    const columns: unknown[][] = COLUMNS.map(() => []);
    for (const entry of entries) {
      const row = [
        entry.atMs,
        entry.appId,
        entry.face,
        entry.channel ?? null,
        entry.to ?? null,
        entry.country ?? null,
        entry.ip ?? null,
        entry.deviceId ?? null,
        entry.purpose ?? null,
        entry.decision,
        entry.reason ?? null,
        entry.shadowed ? entry.shadowed.join(",") : null,
        entry.verificationId ?? null,
      ];
      row.forEach((value, index) => {
        columns[index]?.push(value);
      });
    }
    try {
      await pool.query({ name: "vd_send_log_insert", text: INSERT, values: columns });
    } catch (error) {
      logger.error({ err: error, entries: entries.length }, "send log write failed");
    }
  };

  const flush = (): Promise<void> => {
    if (buffer.length > 0) {
      const entries = buffer;
      buffer = [];
      // Writes are chained so batches land in order and `flush()` waits for all of them.
      writing = writing.then(() => write(entries));
    }
    if (dropped > 0) {
      logger.warn({ dropped }, "send log buffer overflowed; oldest entries dropped");
      dropped = 0;
    }
    return writing;
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
      await flush();
      const { rows } = await pool.query<SendLogRow>({
        name: "vd_send_log_query",
        text: SELECT,
        values: [filter.appId, filter.sinceMs ?? 0, filter.decision ?? null, filter.limit],
      });
      return rows.map(sendLogEntryFromRow);
    },
    flush,
    async close() {
      clearInterval(timer);
      await flush();
    },
  };
}
