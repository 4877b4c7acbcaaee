import type { SqliteDatabase } from "./sqlite-database.js";

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
 */
export function createGroupCommit(db: SqliteDatabase) {
  let queue: Pending[] = [];
  let scheduled = false;

  const runTogether = db.transaction((batch: Pending[]) => batch.map((item) => item.work()));
  // better-sqlite3 runs a transaction function nested in another as a savepoint.
  const runOne = db.transaction((work: () => unknown) => work());
  const runIsolated = db.transaction((batch: Pending[]) =>
    batch.map((item) => {
      try {
        return { ok: true as const, value: runOne(item.work) };
      } catch (error) {
        return { ok: false as const, error };
      }
    }),
  );

  const flush = () => {
    scheduled = false;
    const batch = queue;
    queue = [];
    let values: unknown[];
    try {
      values = runTogether.immediate(batch);
    } catch {
      flushIsolated(batch);
      return;
    }
    values.forEach((value, index) => {
      (batch[index] as Pending).resolve(value);
    });
  };

  const flushIsolated = (batch: Pending[]) => {
    let results: ReturnType<typeof runIsolated>;
    try {
      results = runIsolated.immediate(batch);
    } catch (error) {
      // The commit itself failed (disk full, I/O error): nothing of the batch was written.
      for (const item of batch) item.reject(error);
      return;
    }
    results.forEach((result, index) => {
      const item = batch[index] as Pending;
      if (result.ok) item.resolve(result.value);
      else item.reject(result.error);
    });
  };

  return {
    /**
     * Runs `work` (synchronous SQLite statements, no other side effects: it may run twice) in the
     * next group transaction.
     */
    run<T>(work: () => T): Promise<T> {
      return new Promise<T>((resolve, reject) => {
        queue.push({ work, resolve: resolve as (value: unknown) => void, reject });
        if (!scheduled) {
          scheduled = true;
          setImmediate(flush);
        }
      });
    },
  };
}

export type GroupCommit = ReturnType<typeof createGroupCommit>;
