import type { SqliteDatabase } from "./sqlite-database.js";

interface Pending {
  work: () => unknown;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

/**
 * Group commit (DESIGN.md welcomes it): the writes of every request that arrives in one turn of
 * the event loop run in one transaction, each in its own savepoint, and every caller is answered
 * only after that transaction commits. A commit writes each dirty page to the WAL, so N sends in
 * one commit cost far less than N commits; a request whose work throws rolls back only its own
 * savepoint.
 */
export function createGroupCommit(db: SqliteDatabase) {
  let queue: Pending[] = [];
  let scheduled = false;

  // better-sqlite3 runs a transaction function nested in another as a savepoint.
  const runOne = db.transaction((work: () => unknown) => work());
  const runAll = db.transaction((batch: Pending[]) =>
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
    let results: ReturnType<typeof runAll>;
    try {
      results = runAll.immediate(batch);
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
    /** Runs `work` (synchronous SQLite statements) in the next group transaction. */
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
