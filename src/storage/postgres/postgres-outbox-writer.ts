import pg from "pg";
import type { OutboxMessage } from "../../core/types.js";
import { columnsOf, createBatcher } from "./postgres-batcher.js";

// One statement inserts any number of rows: each column travels as an array and unnest() turns
// them back into rows, so the statement text (and its prepared plan) never changes with the size.
const INSERT_BATCH = `
  INSERT INTO outbox (id, app_id, verification_id, channel, recipient, purpose, locale, sealed_code, created_at,
    deliver_before, attempts, next_attempt_at)
  SELECT id, app_id, verification_id, channel, recipient, purpose, locale, sealed_code, created_at,
    deliver_before, 0, created_at
  FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
    $9::bigint[], $10::bigint[])
    AS t(id, app_id, verification_id, channel, recipient, purpose, locale, sealed_code, created_at, deliver_before)`;

// The same rows again, for sends whose first commit's outcome is unknown: a row that was
// committed after all is skipped, so neither it nor its batch-mates fail, and each is queued once.
const REQUEUE_BATCH = `${INSERT_BATCH}
  ON CONFLICT (id) DO NOTHING`;

// A bigger batch holds its connection for longer than the fsyncs it saves.
const MAX_BATCH_ROWS = 500;

// A row still queued this long (batches ahead of it stalled) is refused unsent, so its send is
// withdrawn and answered 503. Its outcome is then known at most this plus one batch's time (a
// connect and a statement, ~8 s, postgres-pool.ts) after the code was issued: well within the 30 s
// a send's idempotency entry waits for it (IDEMPOTENCY_PENDING_TTL_MS), so a retry under its key
// never finds the entry lapsed while the first send may still be queued and sent.
export const OUTBOX_MAX_WAIT_MS = 10_000;

/**
 * A batch whose statement never reached PostgreSQL (no connection could be had): nothing of it
 * was committed. Any other failure may have come after the commit (a connection that broke or went
 * silent before its answer), unless PostgreSQL itself answered with an error.
 */
export class OutboxRowsNotSent extends Error {
  constructor(cause: unknown) {
    super(`no connection for the outbox rows: ${cause instanceof Error ? cause.message : String(cause)}`, {
      cause,
    });
    this.name = "OutboxRowsNotSent";
  }
}

/** Queues outbox rows durably; the request path of a send waits on it. */
export interface OutboxWriter {
  /** Resolves once the row is committed (durable), never before; rejects if its commit failed. */
  enqueue(message: OutboxMessage): Promise<void>;
  /**
   * Writes a row whose `enqueue` failed with its outcome unknown again, by its own statement:
   * resolves once the row is surely committed exactly once, whether that first commit happened or
   * not; rejects if this commit failed too (then it may be tried again).
   */
  requeue(message: OutboxMessage): Promise<void>;
  /** Resolves when every row handed in so far is committed or failed. */
  drain(): Promise<void>;
}

/**
 * The send path's outbox insert, group-committed (postgres-batcher.ts): concurrent sends share
 * one multi-row INSERT and its commit, and each send is answered only after that commit. Rows
 * have random ids, so a batch fails only as a whole (connection, timeout), never for one row.
 *
 * Requeued rows go through their own batcher and statement (`ON CONFLICT (id) DO NOTHING`), never
 * into the sends' batches: a requeued row may exist already, and the sends' INSERT would fail on
 * it with every send of its batch. One requeue batch at a time: a reply lost with a connection
 * leaves a whole batch of sends unsettled, and their rows then take one commit and one connection
 * of the request pool, not hundreds.
 */
export function createPostgresOutboxWriter(
  pool: pg.Pool,
  options: { maxConcurrentCommits: number; maxWaitMs?: number },
): OutboxWriter {
  const maxWaitMs = options.maxWaitMs ?? OUTBOX_MAX_WAIT_MS;
  const waitedTooLong = () =>
    new OutboxRowsNotSent(new Error(`waited over ${maxWaitMs} ms behind earlier batches`));
  const insert = (name: string, text: string) => async (messages: OutboxMessage[]) => {
    // Connected first, apart from the statement, so a failure says which side of it it came from.
    let client: pg.PoolClient;
    try {
      client = await pool.connect();
    } catch (error) {
      throw new OutboxRowsNotSent(error);
    }
    try {
      await client.query({
        name,
        text,
        values: columnsOf(
          messages.map((message) => [
            message.id,
            message.appId,
            message.verificationId,
            message.channel,
            message.to,
            message.purpose,
            message.locale,
            message.sealedCode,
            message.createdAtMs,
            message.deliverBeforeMs,
          ]),
          10,
        ),
      });
      client.release();
    } catch (error) {
      // PostgreSQL's own refusal leaves the connection sound; any other failure does not.
      client.release(!(error instanceof pg.DatabaseError));
      throw error;
    }
  };
  const batcher = createBatcher<OutboxMessage>(insert("vd_outbox_enqueue", INSERT_BATCH), {
    maxConcurrent: options.maxConcurrentCommits,
    maxItems: MAX_BATCH_ROWS,
    maxWaitMs,
    waitedTooLong,
  });
  const requeues = createBatcher<OutboxMessage>(insert("vd_outbox_requeue", REQUEUE_BATCH), {
    maxConcurrent: 1,
    maxItems: MAX_BATCH_ROWS,
    maxWaitMs,
    waitedTooLong,
  });
  return {
    enqueue: (message) => batcher.add(message),
    requeue: (message) => requeues.add(message),
    drain: async () => {
      await Promise.all([batcher.drain(), requeues.drain()]);
    },
  };
}
