import type { Logger, SendLogEntry } from "../core/ports.js";

// Entries are written in batches, off the request path: refusals under attack stay cheap.
export const SEND_LOG_FLUSH_INTERVAL_MS = 1_000;
// A batch this full is written on the next turn rather than at the timer, by default. An adapter
// that pays a round trip per batch (PostgreSQL) may wait for a larger one.
export const SEND_LOG_FLUSH_BATCH_ENTRIES = 100;
// Under a flood (or while the database is down) the buffer is capped; the oldest entries are
// dropped and counted rather than growing the heap without bound.
const MAX_BUFFERED_ENTRIES = 50_000;
// The most entries one write takes: after an outage the kept entries go back in writes of this
// size, each one a statement a short store timeout lets finish, and (SQLite) a small part of the
// group commit it shares with requests; and far more than a second's flood of entries that name
// recipients, so that a slow store (100 ms a write) still keeps up with 20,000 a second.
const SEND_LOG_MAX_WRITE_ENTRIES = 2_000;
// At the cap, the oldest tenth goes at once: one splice per so many entries, where dropping one
// at a time moved the whole array on every entry recorded (36-51 µs each, on the request path).
const DROPPED_AT_ONCE = MAX_BUFFERED_ENTRIES / 10;
// While writes fail, how often the outage is told again, with what it holds and has dropped.
const OUTAGE_REMINDER_MS = 60_000;

/**
 * The send log's write buffer, shared by the SQLite and PostgreSQL adapters.
 *
 * A refusal is exactly what a bot repeats thousands of times a second, whether decided before the
 * body was read (a captcha demanded of a risky client: only the app, the face, the client and the
 * rule) or after (the same recipient refused again and again, with a made-up captcha token or a
 * fresh Idempotency-Key each time). Refusals alike in every field logged but their time, within one
 * batch, become one row: the first, carrying their `count`. A flood then costs a counter increment
 * instead of a row each, and the log stays small, while every decision is still accounted for.
 * Accepted sends are never merged: each is one code issued, with its verification.
 */
export class SendLogBuffer {
  private entries: SendLogEntry[] = [];
  private readonly repeatable = new Map<string, SendLogEntry>();
  private lastMerged: SendLogEntry | undefined;
  private dropped = 0;

  /**
   * `flushAt`: how many entries make a batch worth writing at once. Where a batch costs nothing of
   * its own (SQLite's share the requests' group commit) keep the default: under a flood, entries
   * are then written before a young-generation collection finds them twice (500 made them outlive
   * two at ~14k refusals a second, and each scavenge moved ~45 KB of them into the old
   * generation; 100: ~6 KB).
   */
  constructor(private readonly flushAt = SEND_LOG_FLUSH_BATCH_ENTRIES) {}

  /** Buffers an entry; true when it fills the batch, which should then be written soon. */
  record(entry: SendLogEntry): boolean {
    // A flood repeats the entry just merged: compared field by field, it needs no key built.
    const last = this.lastMerged;
    if (last !== undefined && sameRepeat(last, entry)) {
      mergeInto(last, entry);
      return false;
    }
    const key = repeatKey(entry);
    if (key !== undefined) {
      const earlier = this.repeatable.get(key);
      if (earlier && sameRepeat(earlier, entry)) {
        mergeInto(earlier, entry);
        this.lastMerged = earlier;
        return false;
      }
      entry = { ...entry };
      this.repeatable.set(key, entry);
      this.lastMerged = entry;
    }
    if (this.entries.length >= MAX_BUFFERED_ENTRIES) {
      for (const oldest of this.entries.splice(0, DROPPED_AT_ONCE)) {
        const oldestKey = repeatKey(oldest);
        // An entry put back after a failed write is not the one its key maps to now.
        if (oldestKey !== undefined && this.repeatable.get(oldestKey) === oldest)
          this.repeatable.delete(oldestKey);
        if (oldest === this.lastMerged) this.lastMerged = undefined;
        // A merged entry stands for every decision it counts.
        this.dropped += oldest.count ?? 1;
      }
    }
    this.entries.push(entry);
    return this.entries.length === this.flushAt;
  }

  /**
   * Puts back, ahead of what was buffered since, the entries a write took and could not write, so
   * the next write tries them again in order. Past the cap the oldest are dropped and counted, as
   * `record` drops them.
   */
  putBack(entries: SendLogEntry[]): void {
    const room = MAX_BUFFERED_ENTRIES - this.entries.length;
    const kept = entries.length <= room ? entries : entries.slice(entries.length - Math.max(room, 0));
    for (const lost of entries.slice(0, entries.length - kept.length)) this.dropped += lost.count ?? 1;
    this.entries = kept.concat(this.entries);
  }

  /** How many entries wait to be written. */
  get size(): number {
    return this.entries.length;
  }

  /**
   * Takes the oldest `limit` entries buffered and how many entries overflowed since the last take.
   * Entries left behind take no more repeats: a repeat after this starts an entry of its own.
   */
  take(limit = Number.POSITIVE_INFINITY): { entries: SendLogEntry[]; dropped: number } {
    const all = this.entries.length <= limit;
    const taken = { entries: all ? this.entries : this.entries.slice(0, limit), dropped: this.dropped };
    this.entries = all ? [] : this.entries.slice(limit);
    this.repeatable.clear();
    this.lastMerged = undefined;
    this.dropped = 0;
    return taken;
  }
}

/** True when `entry` may merge into `merged` (a buffered entry that had a repeat key). */
function sameRepeat(merged: SendLogEntry, entry: SendLogEntry): boolean {
  return (
    entry.ip === merged.ip &&
    entry.reason === merged.reason &&
    entry.decision === merged.decision &&
    entry.appId === merged.appId &&
    entry.face === merged.face &&
    entry.channel === merged.channel &&
    entry.purpose === merged.purpose &&
    isRepeatable(entry) &&
    (aboutTheClient(entry) ||
      (entry.to === merged.to && entry.country === merged.country && entry.deviceId === merged.deviceId))
  );
}

/**
 * Counts `entry` in `merged`; a recipient, country or device they do not share is left out of the
 * merged entry (one refusal about the client, for many recipients).
 */
function mergeInto(merged: SendLogEntry, entry: SendLogEntry): void {
  merged.count = (merged.count ?? 1) + (entry.count ?? 1);
  if (merged.to !== entry.to) delete merged.to;
  if (merged.country !== entry.country) delete merged.country;
  if (merged.deviceId !== entry.deviceId) delete merged.deviceId;
}

/**
 * Entries that may merge share this key (a hit is confirmed by `sameRepeat`: a field holding the
 * separator, or absent beside one spelled "undefined", must not merge two that differ); undefined
 * for an entry that is never merged.
 */
function repeatKey(entry: SendLogEntry): string | undefined {
  if (!isRepeatable(entry)) return undefined;
  const client = `${entry.appId}\n${entry.face}\n${entry.decision}\n${entry.reason}\n${entry.ip}\n${entry.channel}\n${entry.purpose}`;
  return aboutTheClient(entry) ? client : `${client}\n${entry.to}\n${entry.country}\n${entry.deviceId}`;
}

/**
 * A refusal about who asked rather than whom for: its captcha, a per-client or per-app limit, a
 * destination the guard refuses (its reason names the country or prefix). One client rotating
 * recipients (or device ids) repeats it as much as one that does not, so its repeats merge whatever
 * the recipient; only the refusals of a recipient's own limits (`recipient…` rules) and account
 * look-ups (bounded per client by their own limit) keep their recipient apart.
 */
function aboutTheClient(entry: SendLogEntry): boolean {
  if (entry.decision === "account_refused") return false;
  return !(entry.decision === "rate_limited" && entry.reason?.startsWith("recipient"));
}

/**
 * A refusal, with or without a recipient: an accepted send (its verification), or one shadow mode
 * let through (what it would have refused), is a row of its own.
 */
function isRepeatable(entry: SendLogEntry): boolean {
  return entry.decision !== "accepted" && entry.verificationId === undefined && entry.shadowed === undefined;
}

export interface SendLogWriterOptions {
  buffer: SendLogBuffer;
  /** writes one batch; rejects when it could not */
  write: (entries: SendLogEntry[]) => Promise<void>;
  /**
   * True when a failure is the store's (unreachable, full, locked) rather than the batch's: its
   * entries are kept and tried again. A batch the store refuses for what it holds (a bug) is
   * dropped and logged, or it would fail every write after it.
   */
  storeFailed: (error: unknown) => boolean;
  logger: Logger;
}

export interface SendLogWriter {
  /** Writes what is buffered; resolves when what was buffered at the call is written or kept. */
  flush(): Promise<void>;
  /** Stops the timer and writes what is left. */
  close(): Promise<void>;
}

/**
 * Drains a SendLogBuffer through `write`, on a timer and whenever asked, one batch at a time so
 * batches land in order. While the store is failing, a batch goes back to the head of the buffer
 * for the next tick (the buffer's cap bounds what an outage keeps), and the outage is logged once
 * when it starts and once when writes resume, not on every tick.
 */
export function startSendLogWriter(options: SendLogWriterOptions): SendLogWriter {
  const { buffer, write, storeFailed, logger } = options;
  // The last write asked for, until it ends; and the one waiting to start, which a flush joins.
  let tail: Promise<void> | null = null;
  let queued: Promise<void> | null = null;
  let outage: { droppedEntries: number; toldAtMs: number } | null = null;

  /** Writes one batch; false when it failed (the entries kept, or dropped if the batch is at fault). */
  const writeBatch = async (): Promise<boolean> => {
    const { entries, dropped } = buffer.take(SEND_LOG_MAX_WRITE_ENTRIES);
    if (dropped > 0) {
      if (outage) outage.droppedEntries += dropped;
      else logger.warn({ dropped }, "send log buffer overflowed; oldest entries dropped");
    }
    if (entries.length === 0) return true;
    try {
      await write(entries);
    } catch (error) {
      if (!storeFailed(error)) {
        logger.error({ err: error, entries: entries.length }, "send log write failed");
        return false;
      }
      buffer.putBack(entries);
      // Monotonic: a wall clock stepped back would silence the reminder until it caught up.
      const now = performance.now();
      if (!outage) {
        outage = { droppedEntries: 0, toldAtMs: now };
        logger.error(
          { err: error, entries: entries.length, kept: buffer.size },
          "send log write failed; its entries are kept and tried again each second",
        );
      } else if (now - outage.toldAtMs >= OUTAGE_REMINDER_MS) {
        outage.toldAtMs = now;
        logger.error(
          { err: error, kept: buffer.size, dropped: outage.droppedEntries },
          "send log writes still failing; entries are kept",
        );
      }
      return false;
    }
    if (outage) {
      logger.info({ dropped: outage.droppedEntries }, "send log writes resumed");
      outage = null;
    }
    return true;
  };

  /** Writes what was buffered at the call, a batch at a time, until one fails. */
  const writeBuffered = async () => {
    let left = Math.max(buffer.size, 1);
    while (left > 0) {
      left -= SEND_LOG_MAX_WRITE_ENTRIES;
      if (!(await writeBatch())) return;
    }
  };

  // One write at a time (two at once would put failed batches back out of order): a flush starts
  // at once when none runs, so its batch joins this turn's group commit; else it waits for the last
  // one asked, and a flush asked while one waits to start joins that one.
  const writeNow = () =>
    writeBuffered().catch((error: unknown) => logger.error({ err: error }, "send log write crashed"));
  const flush = (): Promise<void> => {
    if (queued) return queued;
    const before = tail;
    const done: Promise<void> = (
      before
        ? before.then(() => {
            queued = null;
            return writeNow();
          })
        : writeNow()
    ).then(() => {
      if (tail === done) tail = null;
    });
    tail = done;
    if (before) queued = done;
    return done;
  };
  const timer = setInterval(() => void flush(), SEND_LOG_FLUSH_INTERVAL_MS);
  timer.unref();

  return {
    flush,
    async close() {
      clearInterval(timer);
      await flush();
      if (buffer.size > 0)
        logger.warn({ entries: buffer.size }, "send log closed with entries the store did not take");
    },
  };
}
