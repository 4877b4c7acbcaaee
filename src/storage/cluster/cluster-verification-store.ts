import { ReplyError } from "ioredis";
import pg from "pg";
import { OtpError } from "../../core/errors.js";
import type { IssueOutcome, IssueRequest, Logger, VerificationStore } from "../../core/ports.js";
import type { DeliveryRecord } from "../../core/types.js";
import { OutboxRowsNotSent, type OutboxWriter } from "../postgres/postgres-outbox-writer.js";
import type { RedisVerificationStore } from "../redis/redis-verification-store.js";
import { storeUnavailable } from "../store-unavailable.js";

export interface ClusterVerificationStoreDeps {
  hot: RedisVerificationStore;
  outbox: OutboxWriter;
  deliveries: (appId: string, verificationId: string) => Promise<DeliveryRecord[]>;
  logger: Logger;
  /** at most one "still pending" line per kind of retry this often (default RETRY_LOG_INTERVAL_MS) */
  retryLogIntervalMs?: number;
}

// A withdraw Redis did not answer is tried again after these pauses (about 16 s in all): a reply
// lost with its connection is retried once the client has reconnected (50 ms on), and Redis gone
// for longer than this leaves the code in place. Well within SUPERSEDED_HINT_TTL_MS (60 s) after
// an outbox commit (at most ~8 s, postgres-pool.ts), so the superseded code can still be found.
const WITHDRAW_RETRY_DELAYS_MS = [100, 250, 500, 1_000, 2_000, 4_000, 8_000];
// At most this many withdraws wait for Redis at once: in an outage that fails sends after their
// command was written, later ones are given up at once (and counted), so the retries stay bounded.
export const MAX_PENDING_WITHDRAWS = 1_000;
// Background retries fail together, one per failed send, while their backend is away: their log
// says so once when they start failing, then at most once this often, with counts, and once when
// the last pending one has ended (as the README promises for a backend failure).
const RETRY_LOG_INTERVAL_MS = 60_000;
// A send whose outbox commit's outcome is unknown has its row written again (idempotently) after
// these pauses, about a minute in all: a reply lost with its connection is settled by the first
// try on a fresh connection; PostgreSQL away for longer leaves things as they were (the code and
// its counters kept, the key free again once its entry lapses).
const SETTLE_RETRY_DELAYS_MS = [250, 500, 1_000, 2_000, 4_000, 8_000, 15_000, 15_000, 15_000];
// Meanwhile the send's idempotency entry stays pending, so a retry under its key is told to wait
// rather than sent a second code: held this long again at every try, which covers the longest
// pause above plus a try (at most OUTBOX_MAX_WAIT_MS queued behind other requeues, then a connect
// and a statement, ~8 s, postgres-pool.ts). Given up, the entry lapses within this.
export const SETTLE_HOLD_MS = 60_000;
// At most this many sends are being settled at once (a lost reply unsettles a whole batch, up to
// 500); past it a send is left unsettled at once (and logged), so the retries stay bounded.
const MAX_PENDING_SETTLES = 2_000;
// A confirm Redis did not answer is tried again after these pauses (about 16 s), at most this many
// at once: the entry it writes replays the first answer even if its pending one lapsed meanwhile.
const CONFIRM_RETRY_DELAYS_MS = [100, 250, 500, 1_000, 2_000, 4_000, 8_000];
const MAX_PENDING_CONFIRMS = 1_000;

/**
 * The cluster VerificationStore: the seam DESIGN.md "The request path budget" describes. `issue`
 * runs the rate rules + code in one Redis round trip, then commits the outbox row in PostgreSQL
 * and only then resolves, so a 2xx means the message is durably queued. If the send fails with
 * its code possibly written (the commit surely failed, or the issue's reply was lost or late), the
 * code is withdrawn (code and idempotency entry deleted, counters refunded, the code it superseded
 * pending again) and the caller gets STORE_UNAVAILABLE; a withdraw Redis does not answer is
 * retried in the background for a while. A commit whose outcome is unknown (its reply lost) is
 * settled in the background instead: the row is written again idempotently, so it is queued
 * exactly once, and the code stays. Everything else is Redis alone, except the delivery records.
 *
 * A send under an Idempotency-Key costs a second round trip once committed: its entry replays only
 * from then on (`RedisVerificationStore.confirm`), so a retry never gets a 2xx for a message that
 * is not queued. While an unknown commit is settled, its entry stays pending (a retry is told to
 * try again shortly), and it replays once the row is surely queued: a retry never gets a second
 * code for a message that went out.
 */
export function createClusterVerificationStore(deps: ClusterVerificationStoreDeps): VerificationStore {
  const { hot, outbox, logger } = deps;
  const intervalMs = deps.retryLogIntervalMs ?? RETRY_LOG_INTERVAL_MS;
  const withdraw = createWithdrawer(hot, logger, intervalMs);
  const confirm = createConfirmer(hot, logger, intervalMs);
  const settle = createSettler(hot, outbox, confirm, logger, intervalMs);
  return {
    async issue(request, nowMs) {
      let outcome: IssueOutcome;
      try {
        outcome = await hot.issue(request, nowMs, { outboxPending: request.outbox !== null });
      } catch (issueError) {
        // The script may have run with its reply lost (the connection broke after the command was
        // written; it is never resent) or late (the command timeout): its code would then supersede
        // the one the user holds, with no message, and its counters stay spent.
        if (!surelyNotIssued(issueError)) await withdraw(request, nowMs, "issue reply lost or late");
        if (issueError instanceof OtpError) throw issueError;
        throw storeUnavailable(`redis: ${reasonOf(issueError)}`, issueError);
      }
      // Refusals and replays wrote no code; test recipients have no message to queue.
      if (outcome.kind !== "issued" || request.outbox === null) return outcome;
      try {
        await outbox.enqueue(request.outbox);
      } catch (commitError) {
        const reason = reasonOf(commitError);
        if (!surelyNotCommitted(commitError)) {
          // The row may have been committed (the connection went silent or broke after the
          // statement was sent): withdrawing would leave a dead code in a delivered message and
          // refund a send that went out. The code and its counters stay, which errs on the closed
          // side, and the row is written again in the background until it is surely queued once.
          await settle(request, outcome, nowMs, commitError);
          throw storeUnavailable(
            `outbox commit outcome unknown, code kept, settling: ${reason}`,
            commitError,
          );
        }
        await withdraw(request, nowMs, "outbox commit failed");
        throw storeUnavailable(`outbox commit failed, code withdrawn: ${reason}`, commitError);
      }
      // The message is queued, so the answer stands whatever the confirm does.
      if (request.idempotency) await confirm(request, outcome, nowMs);
      return outcome;
    },
    consumeAttempt: (ref, budget, nowMs) => hot.consumeAttempt(ref, budget, nowMs),
    approve: (appId, id, token, failureKey, nowMs) => hot.approve(appId, id, token, failureKey, nowMs),
    refundAttempt: (appId, id, failureKey, nowMs) => hot.refundAttempt(appId, id, failureKey, nowMs),
    replay: (appId, key, nowMs) => hot.replay(appId, key, nowMs),
    get: (appId, id) => hot.get(appId, id),
    cancel: (appId, id, nowMs) => hot.cancel(appId, id, nowMs),
    findToken: (appId, tokenHash, nowMs) => hot.findToken(appId, tokenHash, nowMs),
    consumeToken: (appId, tokenHash, nowMs) => hot.consumeToken(appId, tokenHash, nowMs),
    deliveries: (appId, verificationId) => deps.deliveries(appId, verificationId),
  };
}

const reasonOf = (error: unknown): string => (error instanceof Error ? error.message : String(error));

/**
 * True when a failed outbox commit certainly wrote nothing: no connection could be had, so the
 * statement was never sent, or PostgreSQL answered with an error (a statement it refused or
 * cancelled is rolled back). A connection that broke or went silent after the statement was sent
 * leaves the outcome unknown: the commit may have happened.
 */
export function surelyNotCommitted(error: unknown): boolean {
  return error instanceof OutboxRowsNotSent || error instanceof pg.DatabaseError;
}

/**
 * True when a failed issue surely wrote nothing: Redis answered with an error (its refusals, out of
 * memory or read-only, come at a script's first write, so nothing was written), or the command was
 * never sent (no connection, and the client queues nothing). Skipping those keeps an outage from
 * filling the withdraw retries.
 */
function surelyNotIssued(error: unknown): boolean {
  return (
    error instanceof ReplyError ||
    (error instanceof Error && error.message.startsWith("Stream isn't writeable"))
  );
}

/** What a background retry's lines name it by: its send, and what the first failure's line adds. */
interface RetryContext {
  verificationId: string;
  why?: string;
}

// The ended line of a run names this many of the sends it gave up: enough to look into, bounded
// against an outage's thousands.
const MAX_GIVEN_UP_IDS = 20;

/** What the log of one kind of background retry says, and how it names what ended. */
interface RetryLogLines<T> {
  /** the first failure of a run (warn, with its error and the send's context) */
  failing: string;
  /** the first one given up at once in a run, past `maxPending` (error) */
  tooMany: string;
  /** at most once an interval while the run lasts (warn), with counts */
  stillPending: string;
  /**
   * once the run's last pending one has ended (info, error if any was given up), with counts and
   * `givenUpIds`, the verification ids of the first MAX_GIVEN_UP_IDS given up
   */
  ended: string;
  /** the count a try that went through adds to (`confirmed`, `withdrawn`, ...) */
  outcome: (value: T) => string;
}

/**
 * Background retries of one kind (withdraws, confirms, settles). `start` runs `run` now, or, with
 * `afterFailedTry`, as if its first try (the caller's own, made before answering) had failed; then
 * again after each pause of `delaysMs` until it resolves. At most `maxPending` are retried at once,
 * so an outage cannot pile them up: past that `start` answers false and the caller gives up.
 *
 * They are logged as runs, not one by one: an outage fails one per failed send (80 a second under
 * load), and a warning with its stack for each, and a line for each that went through, buried
 * the log. A run starts at the first retry (one line naming its send and error), is reminded of
 * at most once per `intervalMs` while retries are pending, and ends when the last pending one
 * ends, with one line counting how they ended: retried, each outcome, given up, given up at once,
 * and naming the first sends given up (an operator's lead to the codes left in place).
 */
function createRetries<T>(
  delaysMs: readonly number[],
  maxPending: number,
  log: { logger: Logger; intervalMs: number; lines: RetryLogLines<T> },
) {
  const { logger, intervalMs, lines } = log;
  let pending = 0;
  // The run under way: from its first retry until no retry is pending.
  let current: {
    startedAtMs: number;
    counts: Record<string, number>;
    givenUpIds: string[];
    lastError: unknown;
    timer: NodeJS.Timeout;
  } | null = null;
  const counts = () =>
    current ? { pending, ...current.counts, runMs: Math.round(performance.now() - current.startedAtMs) } : {};
  const count = (name: string) => {
    if (current) current.counts[name] = (current.counts[name] ?? 0) + 1;
  };
  const gaveUp = (name: "gaveUp" | "tooManyPending", context: RetryContext) => {
    count(name);
    if (current && current.givenUpIds.length < MAX_GIVEN_UP_IDS)
      current.givenUpIds.push(context.verificationId);
  };
  const failedTry = (error: unknown) => {
    if (current && error !== undefined) current.lastError = error;
  };
  const begin = (context: RetryContext, error: unknown) => {
    if (current) return;
    const timer = setInterval(() => {
      if (current) logger.warn({ ...counts(), err: current.lastError }, lines.stillPending);
    }, intervalMs);
    timer.unref();
    current = {
      startedAtMs: performance.now(),
      counts: { retried: 0 },
      givenUpIds: [],
      lastError: error,
      timer,
    };
    logger.warn({ ...context, err: error }, lines.failing);
  };
  const ended = () => {
    pending -= 1;
    if (pending > 0 || !current) return;
    const told = counts();
    const { counts: tally, givenUpIds, lastError, timer } = current;
    clearInterval(timer);
    current = null;
    if ((tally.gaveUp ?? 0) + (tally.tooManyPending ?? 0) > 0)
      logger.error({ ...told, givenUpIds, err: lastError }, lines.ended);
    else logger.info(told, lines.ended);
  };
  /** one given up before it could start (no room): counted into the run, the first one told */
  const refused = (context: RetryContext) => {
    if ((current?.counts.tooManyPending ?? 0) === 0) logger.error(context, lines.tooMany);
    gaveUp("tooManyPending", context);
  };
  return {
    /** whether a `start` now would be taken */
    hasRoom: () => pending < maxPending,
    refused,
    start(
      run: (attempt: number) => Promise<T>,
      on: { context: RetryContext; firstError?: unknown; done?: (value: T) => void },
      afterFailedTry = false,
    ): boolean {
      if (pending >= maxPending) {
        refused(on.context);
        return false;
      }
      pending += 1;
      begin(on.context, on.firstError);
      count("retried");
      const failed = (attempt: number, error: unknown) => {
        failedTry(error);
        const delayMs = delaysMs[attempt];
        if (delayMs === undefined) {
          gaveUp("gaveUp", on.context);
          ended();
          return;
        }
        setTimeout(() => tryAt(attempt + 1), delayMs).unref();
      };
      const tryAt = (attempt: number) => {
        run(attempt).then(
          (value) => {
            count(lines.outcome(value));
            on.done?.(value);
            ended();
          },
          (error: unknown) => failed(attempt, error),
        );
      };
      if (afterFailedTry) failed(0, undefined);
      else tryAt(0);
      return true;
    },
  };
}

/**
 * Withdraws a send's code: one try before the caller is answered (so its 503 usually finds the send
 * undone already), then, if Redis did not answer, retries in the background (the withdraw is
 * harmless to repeat). A process stopped meanwhile leaves the code, which errs on the closed side.
 */
function createWithdrawer(
  hot: RedisVerificationStore,
  logger: Logger,
  intervalMs: number,
): (request: IssueRequest, nowMs: number, why: string) => Promise<void> {
  const retries = createRetries<boolean>(WITHDRAW_RETRY_DELAYS_MS, MAX_PENDING_WITHDRAWS, {
    logger,
    intervalMs,
    lines: {
      failing: "could not withdraw a failed send's code; retrying in the background, further ones counted",
      tooMany: "too many failed sends' withdraws pending: a further one leaves its code in place (counted)",
      stillPending: "failed sends' withdraws still pending",
      ended: "failed sends' withdraws ended",
      // (not withdrawn: the issue had never run, so there was nothing to undo)
      outcome: (withdrawn) => (withdrawn ? "withdrawn" : "nothingToWithdraw"),
    },
  });
  return async (request, nowMs, why) => {
    try {
      await hot.withdraw(request, nowMs);
    } catch (error) {
      retries.start(
        () => hot.withdraw(request, nowMs),
        { context: { verificationId: request.code.id, why }, firstError: error },
        true,
      );
    }
  };
}

type Issued = Extract<IssueOutcome, { kind: "issued" }>;

/**
 * Confirms a committed keyed send's idempotency entry: one try before the caller is answered (so
 * its key replays at once), then, if Redis did not answer, retries in the background (a confirm is
 * harmless to repeat, and writes the entry again if it lapsed meanwhile). Never rejects: the
 * message is queued, so the send's answer stands.
 */
function createConfirmer(
  hot: RedisVerificationStore,
  logger: Logger,
  intervalMs: number,
): (request: IssueRequest, outcome: Issued, nowMs: number) => Promise<void> {
  const retries = createRetries<boolean>(CONFIRM_RETRY_DELAYS_MS, MAX_PENDING_CONFIRMS, {
    logger,
    intervalMs,
    lines: {
      failing: "could not confirm an idempotency entry; retrying in the background, further ones counted",
      tooMany: "too many idempotency entries' confirms pending: a further one's key may not replay (counted)",
      stillPending: "idempotency entries' confirms still pending",
      ended: "idempotency entries' confirms ended",
      // (not confirmed: the key names another send by now, which nothing here may overwrite)
      outcome: (confirmed) => (confirmed ? "confirmed" : "keyTakenMeanwhile"),
    },
  });
  return async (request, outcome, nowMs) => {
    const confirm = () => hot.confirm(request, nowMs, outcome.resendAfterSeconds);
    try {
      if (!(await confirm()))
        logger.warn(
          { verificationId: request.code.id },
          "an idempotency key names another send; its first send's answer will not replay",
        );
    } catch (error) {
      retries.start(confirm, { context: { verificationId: request.code.id }, firstError: error }, true);
    }
  };
}

/**
 * Settles a send whose outbox commit's outcome is unknown. Before the caller is answered, its
 * idempotency entry is held pending (a retry under its key is told to wait, not sent a second
 * code). Then, in the background, its row is written again (`requeue`: skipped if the first commit
 * happened) until that succeeds, the entry held again before every retry, and the entry is then
 * confirmed: the key replays the first answer and the message is queued exactly once. Given up
 * after SETTLE_RETRY_DELAYS_MS (or at once past MAX_PENDING_SETTLES), or with the process,
 * it leaves the send as it was: the code and its counters kept, the entry lapsing unconfirmed.
 */
function createSettler(
  hot: RedisVerificationStore,
  outbox: OutboxWriter,
  confirm: (request: IssueRequest, outcome: Issued, nowMs: number) => Promise<void>,
  logger: Logger,
  intervalMs: number,
): (request: IssueRequest, outcome: Issued, nowMs: number, commitError: unknown) => Promise<void> {
  const retries = createRetries<void>(SETTLE_RETRY_DELAYS_MS, MAX_PENDING_SETTLES, {
    logger,
    intervalMs,
    lines: {
      failing:
        "an outbox commit's outcome is unknown; writing its row again in the background, further ones counted",
      tooMany:
        "too many outbox rows whose commit was unknown pending: a further one is left unsettled, its code kept (counted)",
      stillPending: "outbox rows whose commit was unknown still being written again",
      ended: "outbox rows whose commit was unknown settled",
      outcome: () => "queued",
    },
  });
  return async (request, outcome, nowMs, commitError) => {
    const message = request.outbox;
    if (message === null) return;
    const context = { verificationId: request.code.id };
    // (checked before the hold: a key held pending with nothing to settle it would be told "in
    // progress" for a minute for nothing)
    if (!retries.hasRoom()) {
      retries.refused(context);
      return;
    }
    const hold = () =>
      request.idempotency
        ? hot.hold(request, nowMs, outcome.resendAfterSeconds, SETTLE_HOLD_MS)
        : Promise.resolve(true);
    try {
      await hold();
    } catch (error) {
      // Its entry may lapse as before; the row is still settled, and the entry then confirmed.
      logger.warn({ ...context, err: error }, "could not hold an idempotency entry pending");
    }
    retries.start(
      (attempt) => {
        // (not awaited: a hold that lands after the confirm leaves the confirmed entry as it is)
        if (attempt > 0) hold().catch(() => {});
        return outbox.requeue(message);
      },
      {
        context,
        firstError: commitError,
        done: () => {
          if (request.idempotency) void confirm(request, outcome, nowMs);
        },
      },
    );
  };
}
