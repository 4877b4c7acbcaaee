import { dirname, join } from "node:path";
import type { OtpError } from "../../core/errors.js";
import type {
  AccountDirectory,
  AppStore,
  CaptchaStore,
  Clock,
  CounterStore,
  DevInbox,
  Logger,
  OutboxStore,
  SendLog,
  VerificationStore,
} from "../../core/ports.js";
import type { Backend, DeliveryBackend, PurgePass } from "../backend.js";
import { storeUnavailable } from "../store-unavailable.js";
import { createCounterKeyFilter } from "./counter-key-filter.js";
import { type FileIdentity, identifyFile, watchFileIdentities } from "./file-identity.js";
import { createGroupCommit } from "./group-commit.js";
import { createSqliteAccountDirectory, settleEmailKeys } from "./sqlite-account-directory.js";
import { createSqliteAppStore } from "./sqlite-app-store.js";
import { createSqliteCaptchaStore } from "./sqlite-captcha-store.js";
import { startSqliteCheckpointer } from "./sqlite-checkpointer.js";
import { createSqliteCounterStore } from "./sqlite-counter-store.js";
import { openSqliteDatabase, type SqliteDatabase } from "./sqlite-database.js";
import { createSqliteDevInbox } from "./sqlite-dev-inbox.js";
import { isStoreUnavailable, sqliteStoreFault } from "./sqlite-faults.js";
import { createSqliteOutboxStore, releaseDeadClaims } from "./sqlite-outbox-store.js";
import { createSqlitePurger } from "./sqlite-purger.js";
import { createSqliteSendLog } from "./sqlite-send-log.js";
import { createSqliteCodeReader, createSqliteVerificationStore } from "./sqlite-verification-store.js";

/** Every port of the embedded mode, over one SQLite file (plus the file, for `verifyd migrate`). */
export interface SqliteBackend extends Backend {
  db: SqliteDatabase;
  verifications: VerificationStore;
  outbox: OutboxStore;
  apps: AppStore;
  accounts: AccountDirectory;
  counters: CounterStore;
  devInbox: DevInbox;
  captcha: CaptchaStore;
  sendLog: SendLog;
  purge: (nowMs: number) => Promise<PurgePass>;
  ready: () => Promise<boolean>;
  close: () => Promise<void>;
}

const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };

export const SQLITE_FILE_NAME = "verifyd.db";
// After the file refused a write (a full disk, an I/O error, the lock held past the busy timeout),
// `/readyz` says not ready this long: `SELECT 1` still answers while every write fails. A write
// that gets through among failing ones does not end it early: on a full disk some commits still
// fit (a WAL restarted from its start reuses its own space), and readiness would flap with them.
const UNREADY_AFTER_FAULT_MS = 5_000;

// How often a serving process checks that verifyd.db and verifyd.lock are still the files it
// opened. A timer of its own on the request thread rather than the checkpointer's loop: two `stat`
// calls a second on libuv's thread pool cost nothing measurable, and the verdict is needed here,
// where the group commit refuses writes, not in a worker that would have to post it back. A
// second is well inside the couple of seconds a deleted store may go on answering.
const FILE_CHECK_INTERVAL_MS = 1_000;
export const LOCK_FILE_NAME = "verifyd.lock";

export function sqlitePath(dataDir: string): string {
  return join(dataDir, SQLITE_FILE_NAME);
}

export function createSqliteBackend(options: {
  path: string;
  synchronous?: "NORMAL" | "FULL";
  migrate?: boolean;
  logger?: Logger;
  /**
   * the clock the core passes the stores' calls (default: the system's). The counter key filter
   * passes over rows whose window this clock has seen end, so a caller with a clock of its own
   * (tests) passes it when it reopens a file.
   */
  clock?: Clock;
  /** how long `ready` answers false after the store's last fault (default UNREADY_AFTER_FAULT_MS) */
  unreadyAfterFaultMs?: number;
  /** open an existing file only (see SqliteOptions.mustExist) */
  mustExist?: boolean;
}): SqliteBackend {
  const db = openSqliteDatabase(options);
  const logger = options.logger ?? silentLogger;
  // The files as opened; the lock is there when a server holds the dir (it takes it first).
  const opened: FileIdentity[] =
    options.path === ":memory:"
      ? []
      : [identifyFile(options.path), identifyFile(join(dirname(options.path), LOCK_FILE_NAME))].filter(
          (file): file is FileIdentity => file !== undefined,
        );
  // Set once the file (or the lock) this process opened is no longer at its path: what is
  // written from then on no restart would find, and another server may be serving the dir.
  let gone: OtpError | undefined;
  let watch: { stop(): void } | undefined;
  // At every start, not per request: an older server may have written accounts since the
  // migration that keys them ran (`verifyd migrate` beside it, then the restart to this build).
  try {
    const emailKeys = settleEmailKeys(db);
    if (emailKeys.keyed > 0 || emailKeys.released > 0)
      logger.info(emailKeys, "accounts an older server wrote are keyed to their mailbox");
  } catch (error) {
    db.close();
    throw error;
  }
  const ping = db.prepare("SELECT 1");
  const unreadyAfterFaultMs = options.unreadyAfterFaultMs ?? UNREADY_AFTER_FAULT_MS;
  // Real time, not `clock`: readiness is about the file now, whatever clock the core is given; and
  // monotonic, so a wall clock stepped back does not keep the store unready until it catches up.
  let faultAtMs = Number.NEGATIVE_INFINITY;
  const noteFault = (error: unknown) => {
    if (isStoreUnavailable(error)) faultAtMs = performance.now();
  };
  const group = createGroupCommit(db, noteFault, () => gone);
  const sendLog = createSqliteSendLog(db, group, logger);
  // Shared by both stores that write counters, so it sees every counter row.
  const clock = options.clock ?? { nowMs: () => Date.now() };
  const counterKeys = createCounterKeyFilter(db, { nowMs: () => clock.nowMs() });
  let checkpointer: ReturnType<typeof startSqliteCheckpointer> | null = null;
  return {
    db,
    verifications: createSqliteVerificationStore(db, group, counterKeys),
    outbox: createSqliteOutboxStore(db, group),
    apps: createSqliteAppStore(db),
    accounts: createSqliteAccountDirectory(db, group),
    counters: createSqliteCounterStore(db, group, counterKeys),
    devInbox: createSqliteDevInbox(db, group),
    captcha: createSqliteCaptchaStore(db, group),
    sendLog,
    purge: createSqlitePurger(db, group),
    storeFault(error) {
      const fault = sqliteStoreFault(error);
      noteFault(fault);
      return fault;
    },
    onAnswered: group.onAnswered,
    releaseDeadClaims: (nowMs) => releaseDeadClaims(db, nowMs),
    ready: async () =>
      gone === undefined && performance.now() - faultAtMs >= unreadyAfterFaultMs && ping.get() !== undefined,
    startMaintenance(report, onGone) {
      if (checkpointer || options.path === ":memory:") return;
      // Only a serving process watches: the CLI's commands are over in a moment.
      watch = watchFileIdentities(
        opened,
        (file, reason) => {
          gone = storeUnavailable(`sqlite: ${file.path} was ${reason} while this server had it open`, null);
          logger.error(
            { path: file.path },
            `${file.path} was ${reason} while this server had it open: every write now fails (503) and /readyz answers 503; the server stops (exit 1), to be started again on its data dir (one server per data dir)`,
          );
          onGone?.();
        },
        FILE_CHECK_INTERVAL_MS,
      );
      // From here on a worker thread checkpoints; the request thread never does.
      db.pragma("wal_autocheckpoint = 0");
      checkpointer = startSqliteCheckpointer(options.path, report);
    },
    close: async () => {
      watch?.stop();
      await sendLog.close();
      counterKeys.stop();
      await checkpointer?.stop();
      db.close();
    },
  };
}

/**
 * A second connection to the file a server has opened (and migrated), for the delivery thread: the
 * outbox, the dev inbox and the apps, with a group commit of its own. Its commits take turns with
 * the server's for SQLite's one write lock; neither waits for it on its event loop.
 */
export function createSqliteDeliveryBackend(options: {
  path: string;
  synchronous?: "NORMAL" | "FULL";
}): DeliveryBackend {
  // Never creates the file or its dir: a file deleted under the server must not come back empty.
  const db = openSqliteDatabase({ ...options, migrate: false, mustExist: true });
  // The server's checkpointer thread keeps the WAL short; a commit here must not checkpoint too.
  db.pragma("wal_autocheckpoint = 0");
  const group = createGroupCommit(db);
  return {
    outbox: createSqliteOutboxStore(db, group),
    devInbox: createSqliteDevInbox(db, group),
    apps: createSqliteAppStore(db),
    codes: createSqliteCodeReader(db),
    purge: createSqlitePurger(db, group),
    close: async () => {
      db.close();
    },
  };
}

/**
 * The SQLite backend behind a running server, for what only the embedded mode has (the file, for
 * `verifyd migrate` and tests that read it); throws in cluster mode.
 */
export function sqliteBackendOf(backend: Backend): SqliteBackend {
  if (!("db" in backend)) throw new Error("not the embedded (SQLite) backend");
  return backend as SqliteBackend;
}
