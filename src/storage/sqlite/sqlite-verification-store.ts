import type {
  AttemptOutcome,
  CodeRef,
  CounterCheck,
  CounterKind,
  FailureBudget,
  IssueOutcome,
  IssueRequest,
  ReplayOutcome,
  VerificationStore,
} from "../../core/ports.js";
import { outranks } from "../../core/rate-limit/refusals.js";
import type {
  Channel,
  CodeRecord,
  DeliveryRecord,
  Purpose,
  StoredStatus,
  TokenRecord,
} from "../../core/types.js";
import { failedChecksKey } from "../../core/verification/keys.js";
import type { CounterKeyFilter } from "./counter-key-filter.js";
import type { GroupCommit } from "./group-commit.js";
import { type CounterRow, prepareCounterHit } from "./sqlite-counter-store.js";
import type { SqliteDatabase } from "./sqlite-database.js";

// A replayed Idempotency-Key returns the first answer for this long (DESIGN.md).
const IDEMPOTENCY_TTL_MS = 24 * 3600 * 1000;

// A code's columns, in the order its statements return them as arrays (`raw`): better-sqlite3 on
// Node 20 builds a row object one property at a time, which for these fourteen columns cost more
// than the lookup itself.
const CODE_COLUMNS =
  "id, app_id, channel, recipient, purpose, token_purposes, code_hash, status, attempts, max_attempts, created_at, expires_at, locale, account_id";
type CodeColumns = [
  id: string,
  appId: string,
  channel: Channel,
  recipient: string,
  purpose: Purpose,
  tokenPurposes: string,
  codeHash: string,
  status: StoredStatus,
  attempts: number,
  maxAttempts: number,
  createdAtMs: number,
  expiresAtMs: number,
  locale: string,
  accountId: string | null,
];

function codeFromColumns([
  id,
  appId,
  channel,
  to,
  purpose,
  tokenPurposes,
  codeHash,
  status,
  attempts,
  maxAttempts,
  createdAtMs,
  expiresAtMs,
  locale,
  accountId,
]: CodeColumns): CodeRecord {
  return {
    id,
    appId,
    channel,
    to,
    purpose,
    tokenPurposes: tokenPurposes.split(",") as Purpose[],
    codeHash,
    status,
    attempts,
    maxAttempts,
    createdAtMs,
    expiresAtMs,
    locale,
    ...(accountId ? { accountId } : {}),
  };
}

/**
 * The embedded VerificationStore. better-sqlite3 is synchronous and runs on the one event-loop
 * thread, so each method's statements run without any other request coming between them; the
 * group commit makes each request's writes all-or-nothing and answers it only once committed;
 * `BEGIN IMMEDIATE` guards against other processes (the CLI) on the same file.
 */
export function createSqliteVerificationStore(
  db: SqliteDatabase,
  group: GroupCommit,
  keys: CounterKeyFilter,
): VerificationStore {
  const statements = {
    idempotencyGet: db.prepare(
      "SELECT verification_id, fingerprint, resend_after FROM idempotency WHERE app_id = ? AND key = ? AND expires_at > ?",
    ),
    idempotencyPut: db.prepare(
      "INSERT OR REPLACE INTO idempotency (app_id, key, verification_id, fingerprint, resend_after, expires_at) VALUES (?, ?, ?, ?, ?, ?)",
    ),
    counterGet: db.prepare("SELECT count, reset_at FROM counters WHERE app_id = ? AND key = ?"),
    // A failure given back; the last one takes its window with it (the row goes), as Redis's
    // refund_counter does: that window began at a failure that, given back, never counted, so the
    // next failure starts a window of its own rather than joining one whose end the undone one set.
    counterRefund: db.prepare(
      "UPDATE counters SET count = count - 1 WHERE app_id = ? AND key = ? AND count > 1 AND reset_at > ?",
    ),
    counterRefundLast: db.prepare(
      "DELETE FROM counters WHERE app_id = ? AND key = ? AND count <= 1 AND reset_at > ?",
    ),
    supersede: db.prepare(
      "UPDATE codes SET status = 'superseded' WHERE app_id = ? AND slot = ? AND status = 'pending'",
    ),
    // Positional parameters, like every statement of a send (see prepareCounterHit).
    insertCode: db.prepare(`
      INSERT INTO codes (id, app_id, slot, channel, recipient, purpose, token_purposes, code_hash, status, attempts,
        max_attempts, created_at, expires_at, locale, account_id)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?, ?, ?)`),
    insertOutbox: db.prepare(`
      INSERT INTO outbox (id, app_id, verification_id, channel, recipient, purpose, locale, sealed_code, created_at,
        deliver_before, attempts, next_attempt_at)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?)`),
    codeById: db.prepare(`SELECT ${CODE_COLUMNS} FROM codes WHERE app_id = ? AND id = ?`).raw(),
    codeBySlot: db
      .prepare(
        `SELECT ${CODE_COLUMNS} FROM codes WHERE app_id = ? AND slot = ? AND status = 'pending' ORDER BY created_at DESC LIMIT 1`,
      )
      .raw(),
    countAttempt: db.prepare("UPDATE codes SET attempts = attempts + 1 WHERE id = ?"),
    refundAttempt: db.prepare(
      "UPDATE codes SET attempts = attempts - 1 WHERE app_id = ? AND id = ? AND attempts > 0",
    ),
    approve: db.prepare(
      "UPDATE codes SET status = 'approved' WHERE app_id = ? AND id = ? AND status = 'pending'",
    ),
    approveAttempt: db.prepare(
      "UPDATE codes SET status = 'approved', attempts = attempts + 1 WHERE app_id = ? AND id = ? AND status = 'pending'",
    ),
    // Only a live code is canceled: an expired or exhausted one keeps the status that explains it.
    cancel: db.prepare(
      "UPDATE codes SET status = 'canceled' WHERE app_id = ? AND id = ? AND status = 'pending' AND expires_at > ? AND attempts < max_attempts",
    ),
    insertToken: db.prepare(`
      INSERT INTO tokens (token_hash, app_id, verification_id, channel, recipient, purposes, expires_at)
      VALUES (?, ?, ?, ?, ?, ?, ?)`),
    findToken: db.prepare("SELECT * FROM tokens WHERE token_hash = ? AND app_id = ? AND expires_at > ?"),
    consumeToken: db.prepare("DELETE FROM tokens WHERE token_hash = ? AND app_id = ? AND expires_at > ?"),
    deliveries: db.prepare(
      "SELECT provider, status, at, error, provider_message_id FROM deliveries WHERE app_id = ? AND verification_id = ? ORDER BY at, id",
    ),
  };

  const refundCounter = (appId: string, key: string, now: number) => {
    if (statements.counterRefund.run(appId, key, now).changes === 0) {
      statements.counterRefundLast.run(appId, key, now);
    }
  };

  const currentCount = (appId: string, key: string, now: number): CounterRow | null => {
    if (!keys.mayExist(appId, key, now)) return null;
    const row = statements.counterGet.get(appId, key) as CounterRow | undefined;
    return row && row.reset_at > now ? row : null;
  };

  // All of a send's counters are read with one statement (one per key count, prepared once): a
  // statement per counter cost more than the rest of a refusal.
  const countersByKeys = new Map<number, ReturnType<typeof db.prepare>>();
  const readCounts = (appId: string, counters: readonly CounterCheck[], now: number) => {
    const current = new Map<string, CounterRow>();
    if (counters.length === 0) return current;
    let statement = countersByKeys.get(counters.length);
    if (!statement) {
      const placeholders = counters.map(() => "?").join(", ");
      statement = db.prepare(
        `SELECT key, count, reset_at FROM counters WHERE app_id = ? AND key IN (${placeholders}) AND reset_at > ?`,
      );
      countersByKeys.set(counters.length, statement);
    }
    const rows = statement.all([appId, ...counters.map((counter) => counter.key), now]) as (CounterRow & {
      key: string;
    })[];
    for (const row of rows) current.set(row.key, row);
    return current;
  };
  /** A send's counters as they stand: read (`readAndNote`) or remembered (`committedCounts`). */
  type CountReader = (
    appId: string,
    counters: readonly CounterCheck[],
    now: number,
  ) => Map<string, CounterRow>;

  // The issue counters as last committed, so the early refusal check (the path an attack takes)
  // reads memory, not SQLite: those a committed send hit (but not those it started at 1) and those
  // an early check read. Only this process writes these counters (embedded mode), and entries are set
  // only after a commit, so the cache can lag the database but never lead it: a stale entry can
  // only let a request through to the checked-again group transaction, never refuse one wrongly.
  // Misses are read from the database; the size is bounded.
  // Two generations bound the memory without per-entry bookkeeping: when the young one is full it
  // becomes the old one and the previous old one is dropped (dropped keys are read again on a miss).
  const COMMITTED_GENERATION_MAX = 50_000;
  let young = new Map<string, CounterRow>();
  let old = new Map<string, CounterRow>();
  const recall = (cacheKey: string) => young.get(cacheKey) ?? old.get(cacheKey);
  const remember = (appId: string, key: string, row: CounterRow) => {
    if (young.size >= COMMITTED_GENERATION_MAX) {
      old = young;
      young = new Map();
    }
    young.set(`${appId}\0${key}`, row);
  };
  const ABSENT: CounterRow = { count: 0, reset_at: 0 };
  // A counter a send only reads (increment 0) is written elsewhere, and may go down there (a right
  // check gives back the failure it counted first): a cached count could then refuse wrongly, so
  // such counters are always read from the file.
  const cacheable = (counter: CounterCheck) => counter.increment !== 0;
  const committedCounts = (appId: string, counters: readonly CounterCheck[], now: number) => {
    const current = new Map<string, CounterRow>();
    const missing: CounterCheck[] = [];
    for (const counter of counters) {
      // A counter never written is zero, and the cache holds nothing live for it: asked first,
      // the filter spares a new recipient's or address's keys their lookups in two large maps.
      if (!keys.mayExist(appId, counter.key, now)) continue;
      const row = cacheable(counter) ? recall(`${appId}\0${counter.key}`) : undefined;
      if (row === undefined) missing.push(counter);
      else if (row.reset_at > now) current.set(counter.key, row);
    }
    if (missing.length > 0) {
      const read = readCounts(appId, missing, now); // already filtered
      for (const counter of missing) {
        const row = read.get(counter.key);
        if (cacheable(counter)) remember(appId, counter.key, row ?? ABSENT);
        if (row) current.set(counter.key, row);
      }
    }
    return current;
  };

  const counters = prepareCounterHit(db, keys);
  const hit = (appId: string, counter: FailureBudget & { key: string }, now: number) =>
    counters.hit(appId, counter.key, counter.windowSeconds * 1000, now);

  const replayOf = (appId: string, key: string, now: number): ReplayOutcome | null => {
    const seen = statements.idempotencyGet.get(appId, key, now) as
      | { verification_id: string; fingerprint: string; resend_after: number }
      | undefined;
    const first = seen && (statements.codeById.get(appId, seen.verification_id) as CodeColumns | undefined);
    if (!seen || !first) return null;
    return {
      kind: "replayed",
      record: codeFromColumns(first),
      resendAfterSeconds: seen.resend_after,
      fingerprint: seen.fingerprint,
    };
  };

  /**
   * The read half of `issue`: an idempotent replay, or a refusal (every rule checked before any is
   * counted, so a refused request consumes no budget); null when the send may go ahead.
   */
  const checkIssue = (
    request: IssueRequest,
    now: number,
    shadowed: string[],
    counts: CountReader,
    inTransaction: boolean,
  ): IssueOutcome | null => {
    const { appId } = request;
    if (request.idempotency) {
      const replayed = replayOf(appId, request.idempotency.key, now);
      if (replayed) return replayed;
      // Only the group transaction may say there is nothing to replay: a first send queued ahead
      // of it in the same group is seen there, not here.
      if (request.idempotency.replayOnly) return inTransaction ? { kind: "not_replayed" } : null;
    }
    let refusal: { rule: string; refusal: CounterKind; retryAfterSeconds: number } | null = null;
    const current = counts(appId, request.counters, now);
    for (const counter of request.counters) {
      const row = current.get(counter.key);
      if (!row || row.count + (counter.increment ?? 1) <= counter.limit) continue;
      if (counter.shadow) {
        shadowed.push(counter.rule);
        continue;
      }
      const candidate = {
        rule: counter.rule,
        refusal: counter.kind ?? "limit",
        retryAfterSeconds: Math.max(1, Math.ceil((row.reset_at - now) / 1000)),
      };
      if (!refusal || outranks(candidate, refusal)) refusal = candidate;
    }
    return refusal ? { kind: "refused", ...refusal } : null;
  };

  /**
   * The write half of `issue`: counters, supersede, code, outbox row, idempotency, one commit.
   * `live`: the counters' rows as the check in the same transaction read them (a counter absent
   * has no live row), which the hits then keep up to date.
   */
  const commitIssue = (
    request: IssueRequest,
    now: number,
    shadowed: string[],
    live: Map<string, CounterRow>,
    hits: [string, CounterRow][],
  ): IssueOutcome => {
    const { appId } = request;
    let resendAfterMs = 0;
    for (const counter of request.counters) {
      if (counter.increment === 0) continue;
      const { key } = counter;
      const row = counters.hitAfterRead(appId, key, counter.windowSeconds * 1000, now, live.get(key));
      live.set(key, row);
      // A counter this send started (at 1) is not cached: most are never read again (a new
      // recipient's, a new address's), and under random-order sends their entries were a quarter
      // of what each scavenge had to copy. A later read misses, reads the row and caches it then.
      if (row.count > 1) hits.push([key, row]);
      const refusesNext = !counter.shadow && (counter.kind ?? "limit") === "limit";
      if (refusesNext && row.count >= counter.limit)
        resendAfterMs = Math.max(resendAfterMs, row.reset_at - now);
    }
    const { code } = request;
    statements.supersede.run(appId, request.slotKey);
    if (request.formerSlotKey !== undefined) statements.supersede.run(appId, request.formerSlotKey);
    statements.insertCode.run(
      code.id,
      code.appId,
      request.slotKey,
      code.channel,
      code.to,
      code.purpose,
      code.tokenPurposes.join(","),
      code.codeHash,
      code.maxAttempts,
      code.createdAtMs,
      code.expiresAtMs,
      code.locale,
      code.accountId ?? null,
    );
    const { outbox } = request;
    if (outbox) {
      statements.insertOutbox.run(
        outbox.id,
        outbox.appId,
        outbox.verificationId,
        outbox.channel,
        outbox.to,
        outbox.purpose,
        outbox.locale,
        outbox.sealedCode,
        outbox.createdAtMs,
        outbox.deliverBeforeMs,
        outbox.createdAtMs,
      );
    }
    const resendAfterSeconds = Math.ceil(resendAfterMs / 1000);
    if (request.idempotency) {
      const { key, fingerprint } = request.idempotency;
      statements.idempotencyPut.run(
        appId,
        key,
        code.id,
        fingerprint,
        resendAfterSeconds,
        now + IDEMPOTENCY_TTL_MS,
      );
    }
    return { kind: "issued", resendAfterSeconds, shadowed };
  };

  /** The read half of an attempt: the code, if it may be tried now, and its failure counter's key. */
  const openAttempt = (
    ref: CodeRef,
    budget: FailureBudget,
    now: number,
  ):
    | Exclude<AttemptOutcome, { kind: "counted" }>
    | { kind: "open"; record: CodeRecord; failureKey: string } => {
    const row = (
      "id" in ref
        ? statements.codeById.get(ref.appId, ref.id)
        : (statements.codeBySlot.get(ref.appId, ref.slotKey) ??
          (ref.formerSlotKey === undefined
            ? undefined
            : statements.codeBySlot.get(ref.appId, ref.formerSlotKey)))
    ) as CodeColumns | undefined;
    if (!row) return { kind: "not_found" };
    const record = codeFromColumns(row);
    if (record.status !== "pending") return { kind: "refused", record, reason: record.status };
    if (now >= record.expiresAtMs) return { kind: "refused", record, reason: "expired" };
    if (record.attempts >= record.maxAttempts) return { kind: "refused", record, reason: "max_attempts" };
    const failureKey = failedChecksKey(record.channel, record.to);
    const failures = currentCount(ref.appId, failureKey, now);
    if (failures && failures.count >= budget.limit) {
      return {
        kind: "refused",
        record,
        reason: "failure_budget",
        retryAfterSeconds: Math.max(1, Math.ceil((failures.reset_at - now) / 1000)),
      };
    }
    return { kind: "open", record, failureKey };
  };

  /** Counts a (possibly wrong) attempt: on the code and on the recipient's failure budget. */
  const countFailure = (
    appId: string,
    id: string,
    failureKey: string,
    budget: FailureBudget,
    now: number,
  ) => {
    statements.countAttempt.run(id);
    hit(appId, { key: failureKey, ...budget }, now);
  };

  // Runs inside a group transaction (`group.run`), as every write of this store does.
  const consumeAttempt = (ref: CodeRef, budget: FailureBudget, now: number): AttemptOutcome => {
    const open = openAttempt(ref, budget, now);
    if (open.kind !== "open") return open;
    countFailure(ref.appId, open.record.id, open.failureKey, budget, now);
    return { kind: "counted", record: { ...open.record, attempts: open.record.attempts + 1 } };
  };

  const insertToken = (token: TokenRecord) =>
    statements.insertToken.run(
      token.tokenHash,
      token.appId,
      token.verificationId,
      token.channel,
      token.to,
      token.purposes.join(","),
      token.expiresAtMs,
    );

  const approve = (
    appId: string,
    id: string,
    token: TokenRecord,
    failureKey: string,
    now: number,
  ): boolean => {
    if (statements.approve.run(appId, id).changes !== 1) return false;
    insertToken(token);
    refundCounter(appId, failureKey, now);
    return true;
  };

  return {
    // A send committed is seen at once: this process is the file's only writer.
    replay: async (appId, key, nowMs) => replayOf(appId, key, nowMs),

    async issue(request, nowMs) {
      // A refusal is answered at once and never takes the write lock (the cheap path under
      // attack). A send that may go ahead is checked again inside the group transaction, where
      // the check and its writes run in one synchronous step: requests queued before it in the
      // same group (50 parallel sends to one recipient) are seen, so exactly one is accepted.
      const early = checkIssue(request, nowMs, [], committedCounts, false);
      if (early) return early;
      const seen: [string, CounterRow][] = [];
      let live = new Map<string, CounterRow>();
      const readAndNote: CountReader = (appId, counters, now) => {
        // The filter is asked once per counter: one it has never seen has no row, and the cache
        // holds nothing live for it, so it needs neither a read nor an entry.
        const maybe = counters.filter((counter) => keys.mayExist(appId, counter.key, now));
        const current = readCounts(appId, maybe, now);
        live = current;
        for (const counter of maybe) {
          if (!cacheable(counter)) continue;
          const row = current.get(counter.key);
          // An absent counter needs an entry only to replace one the cache holds.
          if (row) seen.push([counter.key, row]);
          else if (recall(`${appId}\0${counter.key}`) !== undefined) seen.push([counter.key, ABSENT]);
        }
        return current;
      };
      const outcome = await group.run(() => {
        seen.length = 0; // a group may run its work twice (see createGroupCommit)
        const shadowed: string[] = [];
        return (
          checkIssue(request, nowMs, shadowed, readAndNote, true) ??
          commitIssue(request, nowMs, shadowed, live, seen)
        );
      });
      // Committed: the early check may now see these counts (the later entry of a key wins).
      for (const [key, row] of seen) remember(request.appId, key, row);
      return outcome;
    },
    async consumeAttempt(ref, budget, nowMs) {
      return group.run(() => consumeAttempt(ref, budget, nowMs));
    },
    async attemptAndApprove(ref, budget, nowMs, judge) {
      // Counting, judging and approving run in one synchronous step of one group transaction, so
      // the attempt is counted before the comparison and the approval can happen only once.
      // The attempt and the judgement share one commit, so nothing sees the code between them: a
      // right code is counted as an attempt together with its approval, and a wrong one as a
      // failure; the failure counter is never raised and refunded for a right code (two writes
      // of a random-keyed row saved per approval).
      return group.run(() => {
        const open = openAttempt(ref, budget, nowMs);
        if (open.kind !== "open") return open;
        const counted = { ...open.record, attempts: open.record.attempts + 1 };
        const token = judge(counted);
        if (token && statements.approveAttempt.run(ref.appId, counted.id).changes === 1) {
          insertToken(token);
          return { kind: "approved" as const, record: { ...counted, status: "approved" as const } };
        }
        countFailure(ref.appId, counted.id, open.failureKey, budget, nowMs);
        return { kind: "counted" as const, record: counted };
      });
    },
    async approve(appId, id, token, failureKey, nowMs) {
      return group.run(() => approve(appId, id, token, failureKey, nowMs));
    },
    async refundAttempt(appId, id, failureKey, nowMs) {
      await group.run(() => {
        statements.refundAttempt.run(appId, id);
        refundCounter(appId, failureKey, nowMs);
      });
    },
    get: createSqliteCodeReader(db).get,
    async cancel(appId, id, nowMs) {
      const row = (await group.run(() => {
        statements.cancel.run(appId, id, nowMs);
        return statements.codeById.get(appId, id);
      })) as CodeColumns | undefined;
      return row ? codeFromColumns(row) : null;
    },
    async findToken(appId, tokenHash, nowMs) {
      const row = statements.findToken.get(tokenHash, appId, nowMs) as
        | {
            token_hash: string;
            app_id: string;
            verification_id: string;
            channel: Channel;
            recipient: string;
            purposes: string;
            expires_at: number;
          }
        | undefined;
      if (!row) return null;
      return {
        tokenHash: row.token_hash,
        appId: row.app_id,
        verificationId: row.verification_id,
        channel: row.channel,
        to: row.recipient,
        purposes: row.purposes.split(",") as Purpose[],
        expiresAtMs: row.expires_at,
      };
    },
    async consumeToken(appId, tokenHash, nowMs) {
      return (await group.run(() => statements.consumeToken.run(tokenHash, appId, nowMs).changes)) === 1;
    },
    committedCount(appId, key, nowMs) {
      const row = recall(`${appId}\0${key}`);
      if (row === undefined) return null;
      return row.reset_at > nowMs
        ? { count: row.count, resetAtMs: row.reset_at }
        : { count: 0, resetAtMs: 0 };
    },
    async deliveries(appId, verificationId) {
      const rows = statements.deliveries.all(appId, verificationId) as {
        provider: string;
        status: DeliveryRecord["status"];
        at: number;
        error: string | null;
        provider_message_id: string | null;
      }[];
      return rows.map((row) => ({
        provider: row.provider,
        status: row.status,
        atMs: row.at,
        ...(row.error ? { error: row.error } : {}),
        ...(row.provider_message_id ? { providerMessageId: row.provider_message_id } : {}),
      }));
    },
  };
}

/**
 * Reads codes by id, without the store's writes: for a connection of its own (the delivery
 * thread's, which drops a message whose code ended while it was queued).
 */
export function createSqliteCodeReader(db: SqliteDatabase): Pick<VerificationStore, "get"> {
  const byId = db.prepare(`SELECT ${CODE_COLUMNS} FROM codes WHERE app_id = ? AND id = ?`).raw();
  return {
    async get(appId, id) {
      const row = byId.get(appId, id) as CodeColumns | undefined;
      return row ? codeFromColumns(row) : null;
    },
  };
}
