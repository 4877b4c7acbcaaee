import { timeOrderedKeyBound } from "../../core/ids.js";
import type { PurgePass } from "../backend.js";
import { PAUSE_PER_WORK_MS } from "../purge-loop.js";
import {
  BEFORE_FIRST_COUNTER,
  type CounterKey,
  KEYS_AFTER,
  KEYS_IN_SLICE,
  prepareSliceEnd,
} from "./counter-slices.js";
import type { GroupCommit } from "./group-commit.js";
import type { SqliteDatabase } from "./sqlite-database.js";

type Statement = ReturnType<SqliteDatabase["prepare"]>;

// Rows outlive their expiry by a day so `GET /v1/verifications/{id}` still explains what happened.
const KEEP_AFTER_EXPIRY_MS = 24 * 3600 * 1000;
// A purge transaction holds SQLite's one write lock, and every request's commit waits for it: each
// table's batch is sized so its transaction, commit included, takes about this long. A row's cost
// differs tenfold between tables (an index in random order dirties a page per row, which the
// commit then writes) and with the disk, and past some size a batch costs far more per row (on one
// machine 250 deliveries took 5 ms, 500 took 27), so the size follows the time measured. A table's
// first batch is small and a batch grows by half at most, so none overshoots by much (first
// batches of 500 took up to 110 ms catching up).
const TARGET_TRANSACTION_MS = 10;
const FIRST_BATCH_ROWS = 100;
const MAX_BATCH_GROWTH = 1.5;
const MIN_BATCH_ROWS = 20;
// Tables without an index in random order (the outbox, the send log) delete thousands of rows in
// that time; the cap keeps their batches' lists of keys modest.
const MAX_BATCH_ROWS = 2_000;
// The counters' sweep deletes about this many at a time (they are found in key order, a few pages
// at a time), and the send log's probe looks this far.
const PURGE_BATCH_ROWS = 500;
// Counters are swept in key order, live ones too (see below), in slices of this many keys; a
// stretch of the sweep reads on until it has found a batch of expired ones or walked its most,
// then deletes what it found in one transaction.
const COUNTER_SLICE_KEYS = 500;
const COUNTER_WALK_KEYS = 5_000;
// The sweep crosses the whole table about once in this time, so an expired counter waits about
// that long at most, however large the live table (a day of per-recipient daily counters): the
// waiting ones stay a few percent of it. Where expired rows are dense (catching up after a stop)
// it goes on as fast as the purge loop allows.
const SWEEP_CYCLE_MS = 5 * 60_000;
// Stretches of the sweep in one pass at most; a pass that stops here says there is more.
const COUNTER_TRANSACTIONS_PER_PASS = 10;

/** A table's batch size: the next batch's rows, adjusted to the time the last one took. */
class BatchSize {
  rows = FIRST_BATCH_ROWS;
  /** Notes that a batch of `rows` that removed `removed` held the write lock `transactionMs`. */
  observe(removed: number, transactionMs: number): void {
    const scale = TARGET_TRANSACTION_MS / Math.max(transactionMs, 0.001);
    // A short batch says nothing of how long a full one would take, unless it took too long.
    if (scale >= 1 && removed < this.rows) return;
    const rows = Math.round(this.rows * Math.min(scale, MAX_BATCH_GROWTH));
    this.rows = Math.min(MAX_BATCH_ROWS, Math.max(MIN_BATCH_ROWS, rows));
  }
}

/**
 * Deletes expired rows in small batches so the file stays bounded under sustained load. One call
 * is one pass: a batch per table, and a stretch of the counters' sweep; call again while it says
 * there is more (`startPurgeLoop` does). Each batch is one work of the group commit, so no
 * transaction holds the write lock for more than one batch, and like every work it never sleeps
 * on the event loop waiting for the lock.
 *
 * A pass paces itself: after each transaction it leaves the lock (and its thread) free for twice
 * as long as it worked since its last pause, the transaction's whole time included. Its
 * transactions back to back would hold the lock as one long one for a writer that tries it every
 * millisecond, as the requests' group commit does. The `workMs` it reports is the work after its
 * last pause, for the loop to pace.
 */
export function createSqlitePurger(
  db: SqliteDatabase,
  group: GroupCommit,
): (nowMs: number) => Promise<PurgePass> {
  // Each step has a probe: a read, outside any transaction, that tells whether the step would
  // remove anything. Most passes find nothing in most tables, and a transaction that deletes
  // nothing still takes SQLite's one write lock, which the requests' commits then find taken.
  type Step = {
    probe: Statement;
    /** deletes up to `rows` rows past `cutoffMs`; how many it deleted */
    remove: (cutoffMs: number, rows: number) => number;
    size: BatchSize;
    graceMs: number;
    /** whether a batch that removed this many rows past `cutoffMs` may have left more (default: a full batch) */
    leftMore?: (removed: number, cutoffMs: number) => boolean;
  };
  /** Rows of `table` whose `column` is past; `keys` name a row (a table without rowid has its own). */
  const step = (
    table: string,
    column: string,
    graceMs: number,
    { keys = "rowid", where = "" }: { keys?: string; where?: string } = {},
  ): Step => {
    const statement = db.prepare(
      `DELETE FROM ${table} WHERE (${keys}) IN (SELECT ${keys} FROM ${table} WHERE ${column} < ? ${where} LIMIT ?)`,
    );
    return {
      probe: db.prepare(`SELECT 1 FROM ${table} WHERE ${column} < ? ${where} LIMIT 1`),
      remove: (cutoffMs, rows) => statement.run(cutoffMs, rows).changes,
      size: new BatchSize(),
      graceMs,
    };
  };
  const steps: Step[] = [
    step("codes", "expires_at", KEEP_AFTER_EXPIRY_MS),
    step("outbox", "created_at", KEEP_AFTER_EXPIRY_MS, { where: "AND status <> 'queued'" }),
    step("deliveries", "at", 7 * KEEP_AFTER_EXPIRY_MS),
    step("dev_inbox", "created_at", KEEP_AFTER_EXPIRY_MS),
    step("idempotency", "expires_at", 0, { keys: "app_id, key" }),
    step("sessions", "expires_at", 0, { keys: "token_hash" }),
    step("captcha_challenges", "expires_at", 0, { keys: "token" }),
    step("captcha_passes", "expires_at", 0, { keys: "token_hash" }),
    // The send log is written in time order, so its oldest rows are its first by rowid: found that
    // way they need no index of time, which every decision logged would write (~0.8 µs a row). A
    // row a clock step put ahead stays until its own time has passed, and the rows behind it go:
    // the probe and the batch look at the first 500 rows (or the batch's), not at the first row
    // alone, which such a row would have held in place for as long as the clock had been ahead.
    // (500 such rows still hold it: a clock ahead for that many decisions is a clock to fix.)
    sendLogStep(),
  ];
  function sendLogStep(): Step {
    const graceMs = 30 * KEEP_AFTER_EXPIRY_MS;
    const probe = db.prepare(
      `SELECT 1 FROM (SELECT at FROM send_log ORDER BY rowid LIMIT ${PURGE_BATCH_ROWS}) WHERE at < ? LIMIT 1`,
    );
    const statement = db.prepare(
      `DELETE FROM send_log WHERE rowid IN (
         SELECT rowid FROM (SELECT rowid, at FROM send_log ORDER BY rowid LIMIT ?) WHERE at < ? LIMIT ?)`,
    );
    return {
      probe,
      remove: (cutoffMs, rows) => statement.run(Math.max(rows, PURGE_BATCH_ROWS), cutoffMs, rows).changes,
      size: new BatchSize(),
      graceMs,
      // A batch beside rows a clock step put ahead removes fewer than it could, and more may be due
      // behind them: the probe, asked again, tells (a batch that emptied the due rows under steady
      // traffic is done, and the loop goes back to its pace).
      leftMore: (removed, cutoffMs) => removed > 0 && probe.get(cutoffMs) !== undefined,
    };
  }
  // Counters have no expiry index: it cost ~20% of every counter write on the send path. They are
  // swept instead in key order, a stretch per pass, resuming where the last one stopped and
  // starting over from the first key after the last.
  const sliceEnd = prepareSliceEnd(db);
  const expiredInSlice = db
    .prepare(`SELECT count(*) FROM counters WHERE ${KEYS_IN_SLICE} AND reset_at < ?`)
    .pluck();
  const expiredAfter = db
    .prepare(`SELECT count(*) FROM counters WHERE ${KEYS_AFTER} AND reset_at < ?`)
    .pluck();
  const deleteInSlice = db.prepare(`DELETE FROM counters WHERE ${KEYS_IN_SLICE} AND reset_at < ?`);
  const deleteAfter = db.prepare(`DELETE FROM counters WHERE ${KEYS_AFTER} AND reset_at < ?`);
  // Where the next slice starts; it moves on once a stretch's deletes have committed.
  let cursor = BEFORE_FIRST_COUNTER;
  type Stretch = {
    slices: [CounterKey, CounterKey | undefined][];
    expired: number;
    walked: number;
    next: CounterKey;
  };
  /**
   * Walks slices from `from` on until a batch's worth are expired, the walk is done, or the table
   * ends, reading only: the slices holding expired counters are deleted afterwards in one
   * transaction, so the walk (most of the sweep's work) never holds the write lock. A slice is
   * deleted by range with its expiry test again, so a counter written meanwhile stays.
   */
  const findExpiredCounters = (from: CounterKey, nowMs: number): Stretch => {
    const slices: Stretch["slices"] = [];
    let expired = 0;
    let walked = 0;
    let at = from;
    while (expired < PURGE_BATCH_ROWS && walked < COUNTER_WALK_KEYS) {
      const end = sliceEnd(at, COUNTER_SLICE_KEYS);
      const found = (
        end ? expiredInSlice.get(...at, ...end, nowMs) : expiredAfter.get(...at, nowMs)
      ) as number;
      if (found > 0) slices.push([at, end]);
      expired += found;
      if (!end) return { slices, expired, walked, next: BEFORE_FIRST_COUNTER };
      walked += COUNTER_SLICE_KEYS;
      at = end;
    }
    return { slices, expired, walked, next: at };
  };
  const deleteExpiredCounters = (slices: Stretch["slices"], nowMs: number) => {
    let removed = 0;
    for (const [from, end] of slices) {
      removed += end
        ? deleteInSlice.run(...from, ...end, nowMs).changes
        : deleteAfter.run(...from, nowMs).changes;
    }
    return removed;
  };
  // How many keys the table holds, as the sweep has counted them (the last whole cycle, or this
  // one so far if larger); each pass walks its share of a cycle for the time since the last.
  let tableKeys = 0;
  let cycleKeys = 0;
  let lastPassAtMs: number | null = null;
  /**
   * A pass's part of the sweep, a stretch at a time (`remove` deletes a stretch's slices of
   * expired counters in one transaction); true if it stopped with more to do.
   */
  const sweepCounters = async (
    nowMs: number,
    timed: <T>(work: () => T) => () => T,
    remove: (slices: Stretch["slices"]) => Promise<void>,
  ): Promise<boolean> => {
    const sinceLastPassMs = lastPassAtMs === null ? 0 : nowMs - lastPassAtMs;
    lastPassAtMs = nowMs;
    let toWalk = Math.max(COUNTER_WALK_KEYS, (tableKeys * sinceLastPassMs) / SWEEP_CYCLE_MS);
    for (let n = 1; ; n++) {
      const stretch = timed(() => findExpiredCounters(cursor, nowMs))();
      if (stretch.slices.length > 0) await remove(stretch.slices);
      cursor = stretch.next;
      toWalk -= stretch.walked;
      cycleKeys += stretch.walked;
      tableKeys = Math.max(tableKeys, cycleKeys);
      const dense = stretch.expired >= PURGE_BATCH_ROWS;
      if (cursor === BEFORE_FIRST_COUNTER) {
        tableKeys = cycleKeys;
        cycleKeys = 0;
        if (!dense) return false;
      }
      if (!dense && toWalk <= 0) return false;
      if (n === COUNTER_TRANSACTIONS_PER_PASS) return true;
    }
  };
  // Tokens have no expiry index either (migration 5): keyed by their expiry first, the expired ones
  // sort before the bound of now. Tokens minted before that timed their key by approval instead,
  // so the expiry is checked too; such a token is passed over until it expires.
  const anyExpiredToken = db.prepare("SELECT 1 FROM tokens WHERE token_hash < ? AND expires_at < ? LIMIT 1");
  const deleteExpiredTokens = db.prepare(
    `DELETE FROM tokens WHERE token_hash IN (
       SELECT token_hash FROM tokens WHERE token_hash < ? AND expires_at < ? LIMIT ?)`,
  );
  const tokenBatch = new BatchSize();
  return async (nowMs) => {
    const pass = { removed: 0, more: false, workMs: 0 };
    // Work since the pass last paused: reads, and transactions BEGIN to COMMIT.
    let unpacedMs = 0;
    const timed =
      <T>(work: () => T) =>
      (): T => {
        const startedAt = performance.now();
        try {
          return work();
        } finally {
          unpacedMs += performance.now() - startedAt;
        }
      };
    /** Runs `work` in a transaction of the group commit, then leaves the lock free for a while. */
    const transact = async (work: () => number): Promise<{ removed: number; transactionMs: number }> => {
      const { value: removed, transactionMs } = await group.runTimed(work);
      unpacedMs += transactionMs;
      await new Promise((resolve) => setTimeout(resolve, PAUSE_PER_WORK_MS * unpacedMs));
      unpacedMs = 0;
      pass.removed += removed;
      return { removed, transactionMs };
    };
    const batch = async (
      size: BatchSize,
      due: () => unknown,
      remove: (rows: number) => number,
      leftMore = (removed: number, rows: number) => removed === rows,
    ) => {
      if (!timed(due)()) return;
      const rows = size.rows;
      const { removed, transactionMs } = await transact(() => remove(rows));
      size.observe(removed, transactionMs);
      if (leftMore(removed, rows)) pass.more = true;
    };
    pass.more = await sweepCounters(nowMs, timed, async (slices) => {
      await transact(() => deleteExpiredCounters(slices, nowMs));
    });
    const tokenBound = timeOrderedKeyBound(nowMs);
    await batch(
      tokenBatch,
      () => anyExpiredToken.get(tokenBound, nowMs),
      (rows) => deleteExpiredTokens.run(tokenBound, nowMs, rows).changes,
    );
    for (const { probe, remove, size, graceMs, leftMore } of steps) {
      const cutoffMs = nowMs - graceMs;
      await batch(
        size,
        () => probe.get(cutoffMs),
        (rows) => remove(cutoffMs, rows),
        leftMore && ((removed) => leftMore(removed, cutoffMs)),
      );
    }
    pass.workMs = unpacedMs;
    return pass;
  };
}
