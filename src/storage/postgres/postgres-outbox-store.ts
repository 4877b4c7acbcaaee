import type pg from "pg";
import type { OutboxStore } from "../../core/ports.js";
import type { DeliveryRecord, OutboxMessage } from "../../core/types.js";
import { type OutboxRow, outboxMessagesFromRows, unconfirmedByColumn } from "../rows.js";
import { columnsOf, createBatcher } from "./postgres-batcher.js";

const DELIVERY_COLUMNS =
  "app_id, verification_id, message_id, provider, status, at, error, provider_message_id";
// Settles are batched like the send path's inserts: a worker round settles up to its claim size.
const MAX_SETTLE_BATCH = 500;
const SETTLE_CONCURRENCY = 2;

interface Settlement {
  message: OutboxMessage;
  outcome: "sent" | "failed" | "retry";
  nextAttemptAtMs: number | null;
  /** null: nothing to record (a postponed try) */
  delivery: DeliveryRecord | null;
}

// A delivery whose status a receipt leaves alone: final already, or the receipt says nothing new.
const STAYS = "status IN ('delivered', 'failed') OR status = $1";

const STATEMENTS = {
  // SKIP LOCKED: concurrent claimers (other processes) skip the rows one is claiming instead of
  // waiting for it, and a row whose claim committed meanwhile is re-checked and left out, so no two
  // workers ever get the same message. The lease makes a crashed worker's claim lapse: a claim
  // moves the due time to the lease's end, so the scan for due rows skips those in flight.
  claim: `
    UPDATE outbox o SET claimed_until = $1, next_attempt_at = $1, attempts = o.attempts + 1
    FROM (
      SELECT id FROM outbox
      WHERE status = 'queued' AND next_attempt_at <= $2 AND (claimed_until IS NULL OR claimed_until <= $2)
      ORDER BY next_attempt_at LIMIT $3
      FOR UPDATE SKIP LOCKED
    ) due
    WHERE o.id = due.id
    RETURNING o.id, o.app_id, o.verification_id, o.channel, o.recipient, o.purpose, o.locale, o.sealed_code,
      o.created_at, o.deliver_before, o.attempts, ${unconfirmedByColumn("o", "string_agg(DISTINCT provider, ',')")}`,
  // Settling (sent, failed or retry later) and recording the delivery attempt (none for a
  // postponed one), for a whole batch of messages: one statement, one commit. Each message is
  // settled once per claim, so no outbox row appears twice in a batch. A settle may come late
  // (the worker writes it again until the store takes it, past its lease if need be): a final
  // outcome ends the message whatever claimed it since, that try's record kept all the same; a
  // retry reschedules only the claim it ends (`attempts` counts the claims), so a later one,
  // another worker's, sending the message now, keeps its lease and its own outcome. A settle
  // written again because its commit's reply was lost records its try once: a try is its message,
  // provider and time, or its provider's message id (a receipt may have moved its time and status
  // since) unless that id is our message's own (a provider without ids names every try of the
  // message by it: a second worker's real send after a lapsed lease must be recorded), looked up
  // through the verification's index. The lookup sits in a CASE so that it stays a per-row index
  // probe: as a bare NOT EXISTS the planner made it an anti-join whose cost tripled PostgreSQL's
  // CPU a send in the cluster bench (58-120 µs before it, 178-204 with it, ~100 so).
  settle: `
    WITH input AS (
      SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[],
        $8::bigint[], $9::text[], $10::text[], $11::int[]) WITH ORDINALITY
        AS t(message_id, outcome, next_attempt_at, app_id, verification_id, provider, status, at, error,
          provider_message_id, attempts, position)
    ), settled AS (
      UPDATE outbox o SET
        status = CASE WHEN i.outcome = 'retry' THEN o.status ELSE i.outcome END,
        sealed_code = CASE WHEN i.outcome = 'retry' THEN o.sealed_code END,
        next_attempt_at = CASE WHEN i.outcome = 'retry' THEN i.next_attempt_at ELSE o.next_attempt_at END,
        claimed_until = NULL
      FROM input i
      WHERE o.id = i.message_id AND o.status = 'queued' AND (i.outcome <> 'retry' OR o.attempts = i.attempts)
    )
    INSERT INTO deliveries (${DELIVERY_COLUMNS})
    SELECT app_id, verification_id, message_id, provider, status, at, error, provider_message_id
    FROM input i WHERE provider IS NOT NULL AND CASE WHEN EXISTS (
      SELECT 1 FROM deliveries d
      WHERE d.verification_id = i.verification_id AND d.message_id = i.message_id
        AND d.provider = i.provider
        AND (d.at = i.at OR (d.provider_message_id = i.provider_message_id AND i.provider_message_id <> i.message_id))
    ) THEN false ELSE true END ORDER BY position`,
  // Receipts arrive out of order (one parked and retried, a gateway's "sent" after its
  // "delivered"): a receipt only moves a delivery forward, and a final status stays. A receipt
  // that changes nothing still matched its delivery (the row count), so it is not retried.
  receipt: `
    UPDATE deliveries SET
      status = CASE WHEN ${STAYS} THEN status ELSE $1 END,
      at = CASE WHEN ${STAYS} THEN at ELSE $2 END,
      error = CASE WHEN ${STAYS} THEN error ELSE $3 END
    WHERE provider = $4 AND provider_message_id = $5`,
  // From the partial index of queued messages (outbox_due) while they are few beside the finished
  // ones; its cost grows with the queued messages (tens of ms at 200,000, a long outage's backlog,
  // when PostgreSQL may scan the table instead), which a scrape every few seconds can afford.
  queued: "SELECT count(*)::int AS queued FROM outbox WHERE status = 'queued'",
};

const LIST_DELIVERIES = `
  SELECT provider, status, at, error, provider_message_id FROM deliveries
  WHERE app_id = $1 AND verification_id = $2 ORDER BY at, id`;

/** The delivery attempts of one verification, oldest first (VerificationStore.deliveries). */
export function createPostgresDeliveryList(
  pool: pg.Pool,
): (appId: string, verificationId: string) => Promise<DeliveryRecord[]> {
  return async (appId, verificationId) => {
    const { rows } = await pool.query<{
      provider: string;
      status: DeliveryRecord["status"];
      at: number;
      error: string | null;
      provider_message_id: string | null;
    }>({ name: "vd_deliveries_list", text: LIST_DELIVERIES, values: [appId, verificationId] });
    return rows.map((row) => ({
      provider: row.provider,
      status: row.status,
      atMs: row.at,
      ...(row.error ? { error: row.error } : {}),
      ...(row.provider_message_id ? { providerMessageId: row.provider_message_id } : {}),
    }));
  };
}

/**
 * The durable outbox in PostgreSQL: claims are leases taken with `FOR UPDATE SKIP LOCKED`;
 * settling a message and recording its delivery attempt is group-committed per round.
 */
export function createPostgresOutboxStore(pool: pg.Pool): OutboxStore {
  const run = <Row extends pg.QueryResultRow>(name: keyof typeof STATEMENTS, values: unknown[]) =>
    pool.query<Row>({ name: `vd_outbox_${name}`, text: STATEMENTS[name], values });
  // The worker settles the messages of a round concurrently; they share commits.
  const settlements = createBatcher<Settlement>(
    (batch) =>
      run(
        "settle",
        columnsOf(
          batch.map(({ message, outcome, nextAttemptAtMs, delivery }) => [
            message.id,
            outcome,
            nextAttemptAtMs,
            message.appId,
            message.verificationId,
            delivery?.provider ?? null,
            delivery?.status ?? null,
            delivery?.atMs ?? null,
            delivery?.error ?? null,
            delivery?.providerMessageId ?? null,
            message.attempts,
          ]),
          11,
        ),
      ),
    { maxConcurrent: SETTLE_CONCURRENCY, maxItems: MAX_SETTLE_BATCH, retryAloneWhen: isRefusedValue },
  );
  return {
    async claim(limit, leaseMs, nowMs) {
      const { rows } = await run<OutboxRow>("claim", [nowMs + leaseMs, nowMs, limit]);
      return outboxMessagesFromRows(rows);
    },
    markSent: (message, delivery) =>
      settlements.add({ message, outcome: "sent", nextAttemptAtMs: null, delivery }),
    markFailed: (message, delivery) =>
      settlements.add({ message, outcome: "failed", nextAttemptAtMs: null, delivery }),
    markRetry: (message, delivery, nextAttemptAtMs) =>
      settlements.add({ message, outcome: "retry", nextAttemptAtMs, delivery }),
    postpone: (message, nextAttemptAtMs) =>
      settlements.add({ message, outcome: "retry", nextAttemptAtMs, delivery: null }),
    async recordReceipt(provider, providerMessageId, record) {
      const result = await run("receipt", [
        record.status,
        record.atMs,
        record.error ?? null,
        provider,
        providerMessageId,
      ]);
      return (result.rowCount ?? 0) > 0;
    },
    async queuedCount() {
      const { rows } = await run<{ queued: number }>("queued", []);
      return rows[0]?.queued ?? 0;
    },
  };
}

/**
 * PostgreSQL refused a value rather than the statement or the connection: SQLSTATE classes 22
 * (data exception, e.g. a NUL in text), 23 (integrity constraint) and 54 (program limit, e.g. an
 * index row too large). Settlements carry provider-chosen strings, so a batch failing this way is
 * retried item by item: one odd answer must never keep the rest of a round queued and re-sent.
 */
function isRefusedValue(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" && /^(22|23|54)[0-9A-Z]{3}$/.test(code);
}
