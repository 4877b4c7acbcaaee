import { OtpError } from "../../core/errors.js";
import { unavailable } from "../store-unavailable.js";

// SQLite's errors that say the file cannot be used now (the disk is full, an I/O error, the lock
// held past the busy timeout, a read-only or vanished file, no memory): the store is unavailable,
// as a cluster's unreachable backend is, and each request answers its face's 503 and may try
// again. Any other error (a constraint, a bad statement) is a bug and stays what it is.
const UNAVAILABLE = /^SQLITE_(FULL|IOERR|BUSY|LOCKED|READONLY|CANTOPEN|NOMEM|PROTOCOL)/;

/** STORE_UNAVAILABLE for an error of SQLite that says the file cannot be used now; else undefined. */
export function sqliteStoreFault(error: unknown): OtpError | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" && UNAVAILABLE.test(code) ? unavailable("sqlite", error) : undefined;
}

/** Whether `error` is a store fault as the SQLite stores report one (see `sqliteStoreFault`). */
export function isStoreUnavailable(error: unknown): boolean {
  return error instanceof OtpError && error.code === "STORE_UNAVAILABLE";
}
