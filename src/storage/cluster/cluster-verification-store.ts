import { ReplyError } from "ioredis";
import pg from "pg";
import { OtpError } from "../../core/errors.js";
import type { IssueOutcome, IssueRequest, Logger, VerificationStore } from "../../core/ports.js";
import type { DeliveryRecord } from "../../core/types.js";
import { OutboxRowsNotSent, type OutboxWriter } from "../postgres/postgres-outbox-writer.js";
import type { RedisVerificationStore } from "../redis/redis-verification-store.js";

export interface ClusterVerificationStoreDeps {
  hot: RedisVerificationStore;
  outbox: OutboxWriter;
  deliveries: (appId: string, verificationId: string) => Promise<DeliveryRecord[]>;
  logger: Logger;
}

// A withdraw Redis did not answer is tried again after these pauses (about 16 s in all): a reply
// lost with its connection is retried once the client has reconnected (50 ms on), and Redis gone
// for longer than this leaves the code in place. Well within SUPERSEDED_HINT_TTL_MS (60 s) after
// an outbox commit (at most ~8 s, postgres-pool.ts), so the superseded code can still be found.
const WITHDRAW_RETRY_DELAYS_MS = [100, 250, 500, 1_000, 2_000, 4_000, 8_000];
// At most this many withdraws wait for Redis at once: in an outage that fails sends after their
// command was written, later ones are given up at once (and logged), so the retries stay bounded.
const MAX_PENDING_WITHDRAWS = 1_000;

/**
 * The cluster VerificationStore: the seam DESIGN.md "The request path budget" describes. `issue`
 * runs the rate rules + code in one Redis round trip, then commits the outbox row in PostgreSQL
 * and only then resolves, so a 2xx means the message is durably queued. If the send fails with
 * its code possibly written (the commit surely failed, or the issue's reply was lost or late), the
 * code is withdrawn (code and idempotency entry deleted, counters refunded, the code it superseded
 * pending again) and the caller gets STORE_UNAVAILABLE; a withdraw Redis does not answer is
 * retried in the background for a while. Everything else is Redis alone, except the delivery
 * records.
 *
 * A send under an Idempotency-Key costs a second round trip once committed: its entry replays only
 * from then on (`RedisVerificationStore.confirm`), so a retry never gets a 2xx for a message that
 * is not queued.
 */
export function createClusterVerificationStore(deps: ClusterVerificationStoreDeps): VerificationStore {
  const { hot, outbox, logger } = deps;
  const withdraw = createWithdrawer(hot, logger);
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
        throw issueError;
      }
      // Refusals and replays wrote no code; test recipients have no message to queue.
      if (outcome.kind !== "issued" || request.outbox === null) return outcome;
      try {
        await outbox.enqueue(request.outbox);
      } catch (commitError) {
        const reason = commitError instanceof Error ? commitError.message : String(commitError);
        if (!surelyNotCommitted(commitError)) {
          // The row may have been committed (the connection went silent or broke after the
          // statement was sent): withdrawing would leave a dead code in a delivered message and
          // refund a send that went out. The code and its counters stay, which errs on the closed
          // side; the idempotency entry lapses unconfirmed.
          throw new OtpError("STORE_UNAVAILABLE", {
            internal: `outbox commit outcome unknown, code kept: ${reason}`,
            cause: commitError,
          });
        }
        await withdraw(request, nowMs, "outbox commit failed");
        throw new OtpError("STORE_UNAVAILABLE", {
          internal: `outbox commit failed, code withdrawn: ${reason}`,
          cause: commitError,
        });
      }
      if (request.idempotency) {
        try {
          await hot.confirm(request, nowMs);
        } catch (confirmError) {
          // The message is queued, so the answer stands; a retry meanwhile is told to try again
          // until the entry lapses, and is then issued afresh (its rules permitting).
          logger.warn(
            { err: confirmError, verificationId: request.code.id },
            "could not confirm an idempotency entry",
          );
        }
      }
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

/**
 * Withdraws a send's code: one try before the caller is answered (so its 503 usually finds the send
 * undone already), then, if Redis did not answer, retries in the background (the withdraw is
 * harmless to repeat). A process stopped meanwhile leaves the code, which errs on the closed side.
 */
function createWithdrawer(
  hot: RedisVerificationStore,
  logger: Logger,
): (request: IssueRequest, nowMs: number, why: string) => Promise<void> {
  let pending = 0;
  return async (request, nowMs, why) => {
    const context = { verificationId: request.code.id, why };
    try {
      await hot.withdraw(request, nowMs);
      return;
    } catch (error) {
      if (pending >= MAX_PENDING_WITHDRAWS) {
        logger.error({ ...context, err: error }, "could not withdraw a failed send's code; too many pending");
        return;
      }
      logger.warn({ ...context, err: error }, "could not withdraw a failed send's code yet; retrying");
    }
    pending += 1;
    const retry = (attempt: number) => {
      hot.withdraw(request, nowMs).then(
        (withdrawn) => {
          pending -= 1;
          // (not withdrawn: the issue had never run, so there was nothing to undo)
          logger.info({ ...context, withdrawn, attempt }, "a failed send's withdraw went through");
        },
        (error: unknown) => {
          const delayMs = WITHDRAW_RETRY_DELAYS_MS[attempt];
          if (delayMs === undefined) {
            pending -= 1;
            logger.error({ ...context, err: error }, "gave up withdrawing a failed send's code");
            return;
          }
          setTimeout(() => retry(attempt + 1), delayMs).unref();
        },
      );
    };
    setTimeout(() => retry(1), WITHDRAW_RETRY_DELAYS_MS[0]).unref();
  };
}
