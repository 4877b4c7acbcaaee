import type { SqliteDatabase } from "./sqlite-database.js";
import { sqliteStoreFault } from "./sqlite-faults.js";

// How soon a batch that found the write lock taken tries again.
const LOCK_RETRY_MS = 1;

const asStoreFault = (error: unknown): unknown => sqliteStoreFault(error) ?? error;

interface Pending {
  work: () => unknown;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

/**
 * Group commit (DESIGN.md welcomes it): the writes of every request that arrives in one turn of
 * the event loop run in one transaction, and every caller is answered only after that transaction
 * commits. A commit writes each dirty page to the WAL, so N sends in one commit cost far less than
 * N commits.
 *
 * A request whose work throws must roll back only its own writes. The batch first runs without
 * savepoints (a savepoint copies every page it first touches to a sub-journal: a quarter of a
 * send's store time); only if some work throws is that attempt rolled back whole and the batch run
 * again with a savepoint per request. Work is synchronous SQLite statements, so running it again
 * after a rollback sees exactly the state it saw the first time.
 *
 * The group never waits for the write lock inside SQLite: its busy handler sleeps on the event
 * loop, stalling every request, while another connection (the checkpointer restarting the WAL,
 * the CLI) holds the lock. The group's BEGIN only tries; if the lock is taken the batch is tried
 * again a millisecond later while requests go on arriving, and fails with SQLite's busy error only
 * after the connection's busy timeout.
 *
 * Its answers arrive together, in a `setImmediate` callback: a listener (`onAnswered`) hears when
 * their callers have all gone on with them, so the replies they made can go out before the next
 * turn reads more requests.
 */
export function createGroupCommit(
  db: SqliteDatabase,
  /** told of each error that fails a write, as the callers get it (readiness watches for store faults) */
  onFailure: (error: unknown) => void = () => {},
  /**
   * the error every batch fails with, without running, once the store can no longer keep what
   * it is given (its file deleted under it); undefined while it can
   */
  refusal: () => unknown = () => undefined,
) {
  /** The error a write fails with: SQLite's store faults as STORE_UNAVAILABLE. */
  const failure = (error: unknown): unknown => {
    const fault = asStoreFault(error);
    onFailure(fault);
    return fault;
  };
  let queue: Pending[] = [];
  let scheduled = false;
  const busyTimeoutMs = db.pragma("busy_timeout", { simple: true }) as number;
  let lockWaitStartedAt: number | null = null;
  /** How long the last batch that ran held the write lock, BEGIN to COMMIT, tries rolled back included. */
  let lastTransactionMs = 0;
  let answered: (() => void) | undefined;

  /**
   * Calls the listener once the callers of the answers just given have run on with them: a
   * microtask queued now runs after the answers' first continuations, and the tick it queues only
   * once the microtask queue is empty, that is, after every continuation that follows from them.
   */
  const announceAnswers = () => {
    const listener = answered;
    if (listener) queueMicrotask(() => process.nextTick(listener));
  };

  const runTogether = db.transaction((batch: Pending[]) => batch.map((item) => item.work()));
  // better-sqlite3 runs a transaction function nested in another as a savepoint.
  const runOne = db.transaction((work: () => unknown) => work());
  const runIsolated = db.transaction((batch: Pending[]) =>
    batch.map((item) => {
      try {
        return { ok: true as const, value: runOne(item.work) };
      } catch (error) {
        // Some errors (a full disk, an I/O error) make SQLite roll back the whole transaction,
        // not the statement: the works before this one were undone too, and the next would run
        // in transactions of their own. The batch fails as a whole.
        if (!db.inTransaction) throw error;
        return { ok: false as const, error };
      }
    }),
  );

  // SQLite's error from the last try that found the lock taken: what a batch fails with in the end.
  let lockedError: unknown;

  /** Runs `transaction` if the write lock is free at once; "busy" if another connection holds it. */
  const withoutWaiting = <T>(transaction: () => T): T | "busy" => {
    // SQLite applies this pragma when its statement is prepared, so a prepared one re-run would
    // not set it again; `exec` (~0.5 µs) prepares and runs it each time.
    db.exec("PRAGMA busy_timeout = 0");
    try {
      return transaction();
    } catch (error) {
      if ((error as { code?: unknown }).code !== "SQLITE_BUSY") throw error;
      lockedError = error;
      return "busy";
    } finally {
      db.exec(`PRAGMA busy_timeout = ${busyTimeoutMs}`);
    }
  };

  const schedule = (delayMs: number) => {
    if (scheduled) return;
    scheduled = true;
    if (delayMs === 0) setImmediate(flush);
    else setTimeout(flush, delayMs);
  };

  /** Puts a batch that found the lock taken back in front of the queue, or fails it past the timeout. */
  const waitForLock = (batch: Pending[]) => {
    const now = Date.now();
    lockWaitStartedAt ??= now;
    if (now - lockWaitStartedAt < busyTimeoutMs) {
      queue = batch.concat(queue);
      schedule(LOCK_RETRY_MS);
      return;
    }
    lockWaitStartedAt = null;
    const fault = failure(lockedError);
    for (const item of batch) item.reject(fault);
    announceAnswers();
    if (queue.length > 0) schedule(0);
  };

  /** True when the batch's transaction ran; a batch that found the lock taken waits for it. */
  const ran = <T>(batch: Pending[], outcome: T | "busy"): outcome is T => {
    if (outcome === "busy") {
      waitForLock(batch);
      return false;
    }
    lockWaitStartedAt = null;
    return true;
  };

  const flush = () => {
    scheduled = false;
    const batch = queue;
    queue = [];
    const refused = refusal();
    if (refused !== undefined) {
      const fault = failure(refused);
      for (const item of batch) item.reject(fault);
      announceAnswers();
      return;
    }
    let values: unknown[] | "busy";
    const startedAt = performance.now();
    try {
      values = withoutWaiting(() => runTogether.immediate(batch));
    } catch {
      flushIsolated(batch, startedAt);
      return;
    }
    if (!ran(batch, values)) return;
    lastTransactionMs = performance.now() - startedAt;
    values.forEach((value, index) => {
      (batch[index] as Pending).resolve(value);
    });
    announceAnswers();
  };

  const flushIsolated = (batch: Pending[], startedAt: number) => {
    let results: ReturnType<typeof runIsolated> | "busy";
    try {
      results = withoutWaiting(() => runIsolated.immediate(batch));
    } catch (error) {
      // The commit itself failed, or SQLite rolled the transaction back (disk full, I/O error):
      // nothing of the batch was written.
      const fault = failure(error);
      for (const item of batch) item.reject(fault);
      announceAnswers();
      return;
    }
    if (!ran(batch, results)) return;
    lastTransactionMs = performance.now() - startedAt;
    results.forEach((result, index) => {
      const item = batch[index] as Pending;
      if (result.ok) item.resolve(result.value);
      else item.reject(failure(result.error));
    });
    announceAnswers();
  };

  return {
    /**
     * Runs `work` (synchronous SQLite statements, no other side effects: it may run twice) in the
     * next group transaction.
     */
    run<T>(work: () => T): Promise<T> {
      return new Promise<T>((resolve, reject) => {
        queue.push({ work, resolve: resolve as (value: unknown) => void, reject });
        schedule(0);
      });
    },
    /**
     * `run`, also telling how long the transaction the work ran in held the write lock, BEGIN to
     * COMMIT: the commit writes the pages the works dirtied, often most of a transaction's time.
     */
    runTimed<T>(work: () => T): Promise<{ value: T; transactionMs: number }> {
      return new Promise((resolve, reject) => {
        queue.push({
          work,
          resolve: (value) => resolve({ value: value as T, transactionMs: lastTransactionMs }),
          reject,
        });
        schedule(0);
      });
    },
    /** `listener` (one; a later call replaces it) hears each time a batch's callers have their answers. */
    onAnswered(listener: () => void) {
      answered = listener;
    },
  };
}

export type GroupCommit = ReturnType<typeof createGroupCommit>;
