import pg from "pg";
import { OtpError } from "../../core/errors.js";
import type { Logger, VerificationStore } from "../../core/ports.js";
import type { DeliveryRecord } from "../../core/types.js";
import { OutboxRowsNotSent, type OutboxWriter } from "../postgres/postgres-outbox-writer.js";
import type { RedisVerificationStore } from "../redis/redis-verification-store.js";

export interface ClusterVerificationStoreDeps {
  hot: RedisVerificationStore;
  outbox: OutboxWriter;
  deliveries: (appId: string, verificationId: string) => Promise<DeliveryRecord[]>;
  logger: Logger;
}

/**
 * The cluster VerificationStore: the seam DESIGN.md "The request path budget" describes. `issue`
 * runs the rate rules + code in one Redis round trip, then commits the outbox row in PostgreSQL
 * and only then resolves, so a 2xx means the message is durably queued. If the commit surely
 * failed, the code is withdrawn (code and idempotency entry deleted, counters refunded, the code it
 * superseded pending again) and the caller gets STORE_UNAVAILABLE. Everything else is Redis alone,
 * except the delivery records.
 *
 * A send under an Idempotency-Key costs a second round trip once committed: its entry replays only
 * from then on (`RedisVerificationStore.confirm`), so a retry never gets a 2xx for a message that
 * is not queued.
 */
export function createClusterVerificationStore(deps: ClusterVerificationStoreDeps): VerificationStore {
  const { hot, outbox, logger } = deps;
  return {
    async issue(request, nowMs) {
      const outcome = await hot.issue(request, nowMs, { outboxPending: request.outbox !== null });
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
        try {
          await hot.withdraw(request, nowMs, outcome.supersededId);
        } catch (withdrawError) {
          // Redis went too: the code stays without a message (nobody can learn it) and its
          // counters stay counted, which errs on the closed side.
          logger.error(
            { err: withdrawError, verificationId: request.code.id },
            "could not withdraw a code whose outbox row failed",
          );
        }
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
      const { supersededId: _superseded, ...issued } = outcome;
      return issued;
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
