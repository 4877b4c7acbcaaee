import { OtpError } from "../../core/errors.js";
import type { Logger, VerificationStore } from "../../core/ports.js";
import type { DeliveryRecord } from "../../core/types.js";
import type { OutboxWriter } from "../postgres/postgres-outbox-writer.js";
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
 * and only then resolves, so a 2xx means the message is durably queued. If the commit fails the
 * code is withdrawn (code and idempotency entry deleted, counters refunded) and the caller gets
 * STORE_UNAVAILABLE. Everything else is Redis alone, except the delivery records.
 */
export function createClusterVerificationStore(deps: ClusterVerificationStoreDeps): VerificationStore {
  const { hot, outbox, logger } = deps;
  return {
    async issue(request, nowMs) {
      const outcome = await hot.issue(request, nowMs);
      // Refusals and replays wrote no code; test recipients have no message to queue.
      if (outcome.kind !== "issued" || request.outbox === null) return outcome;
      try {
        await outbox.enqueue(request.outbox);
      } catch (commitError) {
        try {
          await hot.withdraw(request, nowMs);
        } catch (withdrawError) {
          // Redis went too: the code stays without a message (nobody can learn it) and its
          // counters stay counted, which errs on the closed side.
          logger.error(
            { err: withdrawError, verificationId: request.code.id },
            "could not withdraw a code whose outbox row failed",
          );
        }
        throw new OtpError("STORE_UNAVAILABLE", {
          internal: `outbox commit failed, code withdrawn: ${
            commitError instanceof Error ? commitError.message : String(commitError)
          }`,
          cause: commitError,
        });
      }
      return outcome;
    },
    consumeAttempt: (ref, budget, nowMs) => hot.consumeAttempt(ref, budget, nowMs),
    approve: (appId, id, token, failureKey, nowMs) => hot.approve(appId, id, token, failureKey, nowMs),
    refundAttempt: (appId, id, failureKey, nowMs) => hot.refundAttempt(appId, id, failureKey, nowMs),
    get: (appId, id) => hot.get(appId, id),
    cancel: (appId, id, nowMs) => hot.cancel(appId, id, nowMs),
    findToken: (appId, tokenHash, nowMs) => hot.findToken(appId, tokenHash, nowMs),
    consumeToken: (appId, tokenHash, nowMs) => hot.consumeToken(appId, tokenHash, nowMs),
    deliveries: (appId, verificationId) => deps.deliveries(appId, verificationId),
  };
}
