import type { OtpError } from "../core/errors.js";
import type {
  AccountDirectory,
  AppStore,
  CaptchaStore,
  CounterStore,
  DevInbox,
  OutboxStore,
  SendLog,
  VerificationStore,
} from "../core/ports.js";

/** What a background loop tells of its rounds: each that failed, and one that worked after failures. */
export interface LoopReport {
  failed(error: unknown): void;
  succeeded(): void;
}

/**
 * Every port the server needs from its storage, whichever mode provides them: embedded (one
 * SQLite file, storage/sqlite) or cluster (Redis + PostgreSQL, storage/cluster). The composition
 * root depends on this shape only.
 */
export interface Backend {
  verifications: VerificationStore;
  outbox: OutboxStore;
  apps: AppStore;
  accounts: AccountDirectory;
  counters: CounterStore;
  devInbox: DevInbox;
  captcha: CaptchaStore;
  sendLog: SendLog;
  /** deletes a batch of expired rows per table (see `startPurgeLoop`) */
  purge: (nowMs: number) => Promise<PurgePass>;
  /**
   * STORE_UNAVAILABLE for an error a port let through that says the store cannot be used now
   * (SQLite's reads run synchronously in the ports and throw its own errors); undefined for any
   * other error. A backend whose ports translate every failure themselves has none.
   */
  storeFault?: (error: unknown) => OtpError | undefined;
  /**
   * Subscribes to the moments the store answers a group of requests at once (SQLite's group
   * commit), once their callers have gone on with the answers: the HTTP layer then writes the
   * replies they made. A backend whose answers arrive one by one, as I/O, has none.
   */
  onAnswered?: (listener: () => void) => void;
  /** true when every backend answers (`/readyz`); never throws */
  ready: () => Promise<boolean>;
  /**
   * Makes the messages an earlier server claimed and died with due at once (SQLite, whose one
   * server is the only one that claims: called at that server's start); returns how many
   */
  releaseDeadClaims?: (nowMs: number) => number;
  /**
   * starts background maintenance the serving process alone should run (SQLite: WAL checkpoints,
   * and a watch on its files: `onGone` once one is deleted or replaced under it, for good)
   */
  startMaintenance?: (report: LoopReport, onGone?: () => void) => void;
  /** flushes buffered writes and closes connections */
  close: () => Promise<void>;
}

/**
 * What the outbox worker needs from storage when it runs apart from the request thread (the
 * delivery thread): its own connections to the same store.
 */
export interface DeliveryBackend {
  outbox: OutboxStore;
  devInbox: DevInbox;
  apps: AppStore;
  /** reads the codes the messages carry, so that one ended while queued is not sent */
  codes: Pick<VerificationStore, "get">;
  /**
   * The purge, when it is cheaper run here than on the request thread (SQLite: deleting is CPU on
   * whichever thread runs it). A backend without one is purged by the server.
   */
  purge?: (nowMs: number) => Promise<PurgePass>;
  close: () => Promise<void>;
}

/** What one purge pass did. */
export interface PurgePass {
  removed: number;
  /** true when some table may have more to remove: a batch came back full, or a sweep ran out of its pass */
  more: boolean;
  /**
   * ms spent deleting, not waiting for a lock or a connection: the loop paces itself by it, so a
   * purge slowed by busy writers is not slowed further
   */
  workMs: number;
}
