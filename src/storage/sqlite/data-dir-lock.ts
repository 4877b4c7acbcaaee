import { join, resolve } from "node:path";
import Database from "better-sqlite3";
import { createPrivateDir } from "./private-files.js";

/** Another server holds the data dir (DataDirLock). */
export class DataDirInUse extends Error {
  constructor(dataDir: string) {
    super(`the data dir ${dataDir} is in use by another verifyd server: one server serves a data dir`);
    this.name = "DataDirInUse";
  }
}

// The locks this process holds, by data dir, with how many servers share each: only servers that
// ask to (tests that restart one over a dir while the first is open) share one.
const held = new Map<string, { holders: number; release(): void }>();

/**
 * Holds `<data dir>/verifyd.lock` for as long as this server serves the dir. The embedded store
 * counts on being the file's only writer (its counter key filter and committed-count cache read
 * memory instead of the file), so a second server on the same dir would let each other's limits
 * through. The lock is SQLite's own write lock on a file of its own, held by an open exclusive
 * transaction: the operating system drops it when the process dies, so a crash leaves nothing
 * to clean up. The CLI's short commands do not take it.
 */
export function lockDataDir(
  dataDir: string,
  { share = false }: { share?: boolean } = {},
): {
  /** this server took the lock rather than sharing one: no other server of this dir is alive */
  sole: boolean;
  release(): void;
} {
  const key = resolve(dataDir);
  let lock = held.get(key);
  if (lock && !share) throw new DataDirInUse(dataDir);
  const sole = lock === undefined;
  if (!lock) {
    lock = { holders: 0, ...takeLock(dataDir) };
    held.set(key, lock);
  }
  lock.holders += 1;
  const shared = lock;
  let released = false;
  return {
    sole,
    release() {
      if (released) return;
      released = true;
      shared.holders -= 1;
      if (shared.holders > 0) return;
      held.delete(key);
      shared.release();
    },
  };
}

function takeLock(dataDir: string): { release(): void } {
  createPrivateDir(dataDir);
  const lock = new Database(join(dataDir, "verifyd.lock"), { timeout: 0 });
  try {
    lock.pragma("locking_mode = EXCLUSIVE");
    lock.exec("BEGIN EXCLUSIVE");
  } catch (error) {
    lock.close();
    if ((error as { code?: string }).code === "SQLITE_BUSY") throw new DataDirInUse(dataDir);
    throw error;
  }
  return {
    release() {
      if (!lock.open) return;
      lock.exec("ROLLBACK");
      lock.close();
    },
  };
}
