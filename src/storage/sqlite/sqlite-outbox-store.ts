import type { OutboxStore } from "../../core/ports.js";
import type { DeliveryRecord, OutboxMessage } from "../../core/types.js";
import { type OutboxRow, outboxMessagesFromRows, unconfirmedByColumn } from "../rows.js";
import type { GroupCommit } from "./group-commit.js";
import type { SqliteDatabase } from "./sqlite-database.js";

// A delivery whose status a receipt leaves alone: final already, or the receipt says nothing new.
const STAYS = "status IN ('delivered', 'failed') OR status = @status";

/** The embedded outbox: claims are leases, so a crashed worker's messages come back when they lapse. */
export function createSqliteOutboxStore(db: SqliteDatabase, group: GroupCommit): OutboxStore {
  const statements = {
    // A claim moves the message's due time to the end of its lease, so the scan for due messages
    // never walks past the ones in flight (it used to test each one's claimed_until), and a lapsed
    // lease makes the message due again. claimed_until stays as the record of the lease.
    claim: db.prepare(`
      UPDATE outbox SET claimed_until = @leaseUntil, next_attempt_at = @leaseUntil, attempts = attempts + 1
      WHERE id IN (
        SELECT id FROM outbox
        WHERE status = 'queued' AND next_attempt_at <= @now AND (claimed_until IS NULL OR claimed_until <= @now)
        ORDER BY next_attempt_at LIMIT @limit)
      RETURNING id, app_id, verification_id, channel, recipient, purpose, locale, sealed_code, created_at,
        deliver_before, attempts, ${unconfirmedByColumn("outbox", "group_concat(DISTINCT provider)")}`),
    // A settle may come late (the worker writes it again until the store takes it, past its lease
    // if need be). A final outcome ends the message whatever claimed it since: that try's record
    // is kept all the same. A retry reschedules only the claim it ends (`attempts` counts the
    // claims): a later one, another worker's, sending the message now, keeps its lease and its
    // own outcome, or a third worker would claim and send it too.
    finish: db.prepare(
      "UPDATE outbox SET status = ?, sealed_code = NULL, claimed_until = NULL WHERE id = ? AND status = 'queued'",
    ),
    retry: db.prepare(
      "UPDATE outbox SET next_attempt_at = ?, claimed_until = NULL WHERE id = ? AND status = 'queued' AND attempts = ?",
    ),
    insertDelivery: db.prepare(`
      INSERT INTO deliveries (app_id, verification_id, message_id, provider, status, at, error, provider_message_id)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?)`),
    // Receipts arrive out of order (one parked and retried, a gateway's "sent" after its
    // "delivered"): a receipt only moves a delivery forward, and a final status stays. A receipt
    // that changes nothing still matched its delivery (the row count), so it is not retried.
    receipt: db.prepare(`
      UPDATE deliveries SET
        status = CASE WHEN ${STAYS} THEN status ELSE @status END,
        at = CASE WHEN ${STAYS} THEN at ELSE @at END,
        error = CASE WHEN ${STAYS} THEN error ELSE @error END
      WHERE provider = @provider AND provider_message_id = @providerMessageId`),
    // Read from the partial index of queued messages (outbox_due): their number, not the table's.
    queued: db.prepare("SELECT count(*) AS queued FROM outbox WHERE status = 'queued'").pluck(),
  };

  const record = (message: OutboxMessage, delivery: DeliveryRecord) =>
    statements.insertDelivery.run(
      message.appId,
      message.verificationId,
      message.id,
      delivery.provider,
      delivery.status,
      delivery.atMs,
      delivery.error ?? null,
      delivery.providerMessageId ?? null,
    );

  // Both run inside a group transaction (`group.run`), which makes each all-or-nothing.
  const finish = (status: "sent" | "failed", message: OutboxMessage, delivery: DeliveryRecord) => {
    statements.finish.run(status, message.id);
    record(message, delivery);
  };
  const retry = (message: OutboxMessage, delivery: DeliveryRecord, nextAttemptAtMs: number) => {
    statements.retry.run(nextAttemptAtMs, message.id, message.attempts);
    record(message, delivery);
  };

  return {
    async claim(limit, leaseMs, nowMs) {
      // In the group transaction: a claim shares its commit with the sends of the same turn.
      const rows = (await group.run(() =>
        statements.claim.all({ leaseUntil: nowMs + leaseMs, now: nowMs, limit }),
      )) as OutboxRow[];
      return outboxMessagesFromRows(rows);
    },
    // A round's outcomes share one commit through the group committer.
    async markSent(message, delivery) {
      await group.run(() => finish("sent", message, delivery));
    },
    async markFailed(message, delivery) {
      await group.run(() => finish("failed", message, delivery));
    },
    async markRetry(message, delivery, nextAttemptAtMs) {
      await group.run(() => retry(message, delivery, nextAttemptAtMs));
    },
    async postpone(message, nextAttemptAtMs) {
      await group.run(() => statements.retry.run(nextAttemptAtMs, message.id, message.attempts));
    },
    async recordReceipt(provider, providerMessageId, delivery) {
      const result = statements.receipt.run({
        status: delivery.status,
        at: delivery.atMs,
        error: delivery.error ?? null,
        provider,
        providerMessageId,
      });
      return result.changes > 0;
    },
    async queuedCount() {
      return statements.queued.get() as number;
    },
  };
}

/**
 * Gives back, due at once, the messages an earlier server of this file had claimed and died with:
 * for a server's start, which holds the data dir alone (lockDataDir), so every live claim is a dead
 * process's. Without it they waited out their lease, 30 s or more, after every crash. Returns how
 * many. (A message the dead server had handed to its provider is sent again, as after a lapsed
 * lease: delivery is at-least-once.)
 */
export function releaseDeadClaims(db: SqliteDatabase, nowMs: number): number {
  return db
    .prepare(
      "UPDATE outbox SET next_attempt_at = ?, claimed_until = NULL WHERE status = 'queued' AND claimed_until > ?",
    )
    .run(nowMs, nowMs).changes;
}
