import type { Redis } from "ioredis";
import { parseVerificationId } from "../../core/ids.js";
import type {
  AttemptOutcome,
  AttemptRefusal,
  CounterKind,
  IssueOutcome,
  IssueRequest,
  ReplayOutcome,
  VerificationStore,
} from "../../core/ports.js";
import { outranks } from "../../core/rate-limit/refusals.js";
import type { Channel, Purpose, TokenRecord } from "../../core/types.js";
import { parseSlotKey } from "../../core/verification/keys.js";
import { decodeCode, encodeCode, idOfCode, slotSignature } from "./redis-code-codec.js";
import { type RedisKeys, ttlMs } from "./redis-keys.js";
import { replyArray, replyBuffer, replyNumber, replyText } from "./redis-replies.js";
import { withScripts } from "./redis-scripts.js";

// A replayed Idempotency-Key returns the first answer for this long (DESIGN.md).
const IDEMPOTENCY_TTL_MS = 24 * 3600 * 1000;
// A code outlives its expiry by this much so `GET /v1/verifications/{id}` can still say "expired"
// (or "approved") for a while. Shorter than SQLite's day on purpose: Redis holds everything in
// memory, and at 1,000 sends/s an hour of grace is ~4 M codes instead of ~90 M.
export const CODE_GRACE_MS = 3600 * 1000;

const REFUSAL_BY_STATUS: Record<string, AttemptRefusal> = {
  a: "approved",
  c: "canceled",
  s: "superseded",
  expired: "expired",
  max_attempts: "max_attempts",
  failure_budget: "failure_budget",
};

/**
 * The hot half of the cluster VerificationStore: everything except the outbox row and delivery
 * records, which live in PostgreSQL (the cluster store composes both). `issue` here ignores
 * `request.outbox`; `withdraw` undoes an `issue` whose send failed (its outbox row could not be
 * committed, or its reply never came).
 */
export interface RedisVerificationStore extends Omit<VerificationStore, "deliveries" | "issue"> {
  /**
   * As VerificationStore.issue; with `outboxPending`, an idempotency entry it writes replays
   * nothing (answers `in_progress`) until `confirm` says the outbox row is committed.
   */
  issue(request: IssueRequest, nowMs: number, options?: { outboxPending: boolean }): Promise<IssueOutcome>;
  /**
   * The send's outbox row is committed: its idempotency entry now replays it (for the day from
   * `nowMs`, the issue's time), written again if it lapsed while pending. `resendAfterSeconds`:
   * the issue's. Resolves false only when the key names another send by now (left as it is);
   * harmless to repeat.
   */
  confirm(request: IssueRequest, nowMs: number, resendAfterSeconds: number): Promise<boolean>;
  /**
   * The send's outbox commit is being settled: its idempotency entry answers "in progress" for
   * at least `pendingMs` more (written again, pending, if it lapsed), unless it is confirmed
   * already. Resolves false only when the key names another send by now.
   */
  hold(request: IssueRequest, nowMs: number, resendAfterSeconds: number, pendingMs: number): Promise<boolean>;
  /**
   * Atomically deletes the issued code and its idempotency entry (if it still names it), refunds
   * the counters `issue` counted, and gives the slot back to the pending code the issue
   * superseded, unless a newer code has taken it since. Needs nothing from the issue's reply, and
   * does nothing when the code does not exist (the issue never ran, or it was withdrawn already),
   * so it may be retried. Resolves whether it withdrew the code.
   */
  withdraw(request: IssueRequest, nowMs: number): Promise<boolean>;
}

/** The replay script's reply ({'replayed', id, code, resend, fingerprint} or {'in_progress', fingerprint}). */
function replayFrom(appId: string, reply: unknown[]): ReplayOutcome {
  if (replyText(reply[0]) === "in_progress") return { kind: "in_progress", fingerprint: replyText(reply[1]) };
  const id = replyText(reply[1]);
  return {
    kind: "replayed",
    record: decodeCode(appId, id, replyBuffer(reply[2])),
    resendAfterSeconds: replyNumber(reply[3]),
    fingerprint: replyText(reply[4]),
  };
}

// How long an idempotency entry waits for its send's outbox commit before it lapses: longer than
// a send may wait for its commit's outcome (the outbox queue's bound, OUTBOX_MAX_WAIT_MS, plus the
// pool's connect and query timeouts, postgres-pool.ts), so a live send's entry does not lapse
// first, yet a send that died leaves its key usable again soon. A commit whose outcome is unknown holds it for longer while it is settled.
export const IDEMPOTENCY_PENDING_TTL_MS = 30_000;

/**
 * The codes, counters, idempotency keys and tokens of the cluster mode in Redis. Every method is
 * one round trip: a Lua script (atomic) or a single command. Same semantics as the SQLite store.
 */
export function createRedisVerificationStore(client: Redis, keys: RedisKeys): RedisVerificationStore {
  const redis = withScripts(client);

  const counterKeys = (request: IssueRequest): string[] =>
    request.counters.map((counter) => keys.counter(request.appId, counter.key));
  const idempotencyKey = (request: IssueRequest): string =>
    keys.idempotency(request.appId, request.idempotency?.key ?? "");
  // The two keys a code can be under (redis-keys.ts) and the id's stamp that tells which; null for
  // a string that is not a verification id, which no code can have.
  const codeKeys = (appId: string, id: string) => {
    const parts = parseVerificationId(id);
    return parts && { slot: keys.slot(appId, parts.slotTag), own: keys.code(appId, id), stamp: parts.stamp };
  };

  // confirm (pendingMs 0) and hold: one script (redis-scripts.ts CONFIRM).
  const settle = async (
    request: IssueRequest,
    nowMs: number,
    resendAfterSeconds: number,
    pendingMs: number,
  ): Promise<boolean> => {
    if (!request.idempotency) return true;
    const settled = await redis.vdConfirm(
      1,
      idempotencyKey(request),
      nowMs,
      request.code.id,
      IDEMPOTENCY_TTL_MS,
      resendAfterSeconds,
      request.idempotency.fingerprint,
      pendingMs,
    );
    return replyNumber(settled) === 1;
  };

  return {
    async issue(request, nowMs, options): Promise<IssueOutcome> {
      const { appId, code, counters, slotTags } = request;
      // The code goes under the tag its id carries; the other tags only supersede.
      const tag = parseVerificationId(code.id)?.slotTag;
      if (tag !== slotTags[0]) throw new Error(`verification id ${code.id} does not carry the slot's tag`);
      const argv: (string | number | Buffer)[] = [
        nowMs,
        encodeCode(code),
        ttlMs(code.expiresAtMs + CODE_GRACE_MS, nowMs),
        keys.app(appId),
        code.id,
        // a fingerprint is a sha256 hex, never empty, so '' can mean "no idempotency key"
        request.idempotency?.fingerprint ?? "",
        IDEMPOTENCY_TTL_MS,
        slotTags.length,
        options?.outboxPending ? IDEMPOTENCY_PENDING_TTL_MS : 0,
        request.idempotency?.replayOnly ? 1 : 0,
      ];
      for (const counter of counters) {
        const kind = counter.kind ?? "limit";
        const flags = `${counter.shadow ? "s" : ""}${!counter.shadow && kind === "limit" ? "l" : ""}`;
        argv.push(counter.limit, counter.windowSeconds * 1000, counter.increment ?? 1, flags || "-");
      }
      const issueKeyList = [
        ...slotTags.map((slotTag) => keys.slot(appId, slotTag)),
        idempotencyKey(request),
        ...counterKeys(request),
      ];
      const reply = replyArray(await redis.vdIssueBuffer(issueKeyList.length, ...issueKeyList, ...argv));
      const kind = replyText(reply[0]);
      if (kind === "not_replayed") return { kind };
      if (kind === "in_progress" || kind === "replayed") return replayFrom(appId, reply);
      if (kind === "refused") {
        // Lua reports every refusing rule; which one the caller sees is core's ranking, applied in
        // rule order exactly as the SQLite store does.
        let refusal: { rule: string; refusal: CounterKind; retryAfterSeconds: number } | null = null;
        for (const entry of replyArray(reply[1])) {
          const [index, msLeft] = replyArray(entry).map(replyNumber) as [number, number];
          const counter = counters[index - 1];
          if (!counter) continue;
          const candidate = {
            rule: counter.rule,
            refusal: counter.kind ?? "limit",
            retryAfterSeconds: Math.max(1, Math.ceil(msLeft / 1000)),
          };
          if (!refusal || outranks(candidate, refusal)) refusal = candidate;
        }
        if (!refusal) throw new Error("issue script refused without a rule");
        return { kind: "refused", ...refusal };
      }
      return {
        kind: "issued",
        resendAfterSeconds: Math.ceil(replyNumber(reply[1]) / 1000),
        shadowed: replyArray(reply[2]).map((index) => counters[replyNumber(index) - 1]?.rule ?? ""),
      };
    },

    async replay(appId, key, nowMs) {
      const reply = replyArray(
        await redis.vdReplayBuffer(1, keys.idempotency(appId, key), nowMs, keys.app(appId)),
      );
      return replyText(reply[0]) === "none" ? null : replayFrom(appId, reply);
    },

    confirm: (request, nowMs, resendAfterSeconds) => settle(request, nowMs, resendAfterSeconds, 0),
    hold: (request, nowMs, resendAfterSeconds, pendingMs) =>
      settle(request, nowMs, resendAfterSeconds, Math.max(1, pendingMs)),

    async withdraw(request, nowMs) {
      const code = codeKeys(request.appId, request.code.id);
      if (!code) return false;
      const withdrawKeys = [code.slot, code.own, idempotencyKey(request), ...counterKeys(request)];
      const withdrawn = await redis.vdWithdraw(
        withdrawKeys.length,
        ...withdrawKeys,
        nowMs,
        request.code.id,
        code.stamp,
        keys.app(request.appId),
        ...request.counters.map((counter) => (counter.increment === 0 ? 0 : 1)),
      );
      return replyNumber(withdrawn) === 1;
    },

    async consumeAttempt(ref, budget, nowMs): Promise<AttemptOutcome> {
      let lookup: { keys: string[]; match: string | Buffer; idOf: (index: number, value: Buffer) => string };
      if ("slotKey" in ref) {
        const { channel, address, purpose } = parseSlotKey(ref.slotKey);
        lookup = {
          keys: ref.slotTags.map((slotTag) => keys.slot(ref.appId, slotTag)),
          match: slotSignature(channel, address, purpose),
          idOf: (index, value) => idOfCode(ref.slotTags[index - 1] ?? "", value),
        };
      } else {
        const code = codeKeys(ref.appId, ref.id);
        if (!code) return { kind: "not_found" };
        lookup = { keys: [code.slot, code.own], match: code.stamp, idOf: () => ref.id };
      }
      const reply = replyArray(
        await redis.vdConsumeAttemptBuffer(
          lookup.keys.length,
          ...lookup.keys,
          nowMs,
          "slotKey" in ref ? 1 : 0,
          keys.app(ref.appId),
          budget.limit,
          budget.windowSeconds * 1000,
          lookup.match,
        ),
      );
      const kind = replyText(reply[0]);
      if (kind === "not_found") return { kind: "not_found" };
      if (kind === "counted") {
        const value = replyBuffer(reply[1]);
        return {
          kind: "counted",
          record: decodeCode(ref.appId, lookup.idOf(replyNumber(reply[2]), value), value),
        };
      }
      const reason = REFUSAL_BY_STATUS[replyText(reply[1])];
      if (!reason) throw new Error(`unexpected refusal ${replyText(reply[1])}`);
      const value = replyBuffer(reply[2]);
      const record = decodeCode(ref.appId, lookup.idOf(replyNumber(reply[3]), value), value);
      return reply[4] === undefined
        ? { kind: "refused", record, reason }
        : {
            kind: "refused",
            record,
            reason,
            retryAfterSeconds: Math.max(1, Math.ceil(replyNumber(reply[4]) / 1000)),
          };
    },

    async approve(appId, id, token, failureKey, nowMs) {
      const code = codeKeys(appId, id);
      if (!code) return false;
      const approved = await redis.vdApprove(
        4,
        code.slot,
        code.own,
        keys.token(appId, token.tokenHash),
        keys.counter(appId, failureKey),
        nowMs,
        encodeToken(token),
        ttlMs(token.expiresAtMs, nowMs),
        code.stamp,
      );
      return replyNumber(approved) === 1;
    },

    async refundAttempt(appId, id, failureKey, nowMs) {
      const code = codeKeys(appId, id);
      if (!code) return;
      await redis.vdRefundAttempt(3, code.slot, code.own, keys.counter(appId, failureKey), nowMs, code.stamp);
    },

    async get(appId, id) {
      const code = codeKeys(appId, id);
      if (!code) return null;
      // Both keys in one MGET (they share the app's hash tag): the slot's code if it is this one.
      const [underSlot, own] = await redis.mgetBuffer(code.slot, code.own);
      const value = underSlot && isCode(underSlot, code.stamp) ? underSlot : own;
      return value ? decodeCode(appId, id, value) : null;
    },

    async cancel(appId, id, nowMs) {
      const code = codeKeys(appId, id);
      if (!code) return null;
      const value = await redis.vdCancelBuffer(2, code.slot, code.own, code.stamp, nowMs);
      return value ? decodeCode(appId, id, replyBuffer(value)) : null;
    },

    async findToken(appId, tokenHash, nowMs) {
      const value = await redis.get(keys.token(appId, tokenHash));
      const token = value === null ? null : decodeToken(appId, tokenHash, value);
      return token && token.expiresAtMs > nowMs ? token : null;
    },

    async consumeToken(appId, tokenHash, nowMs) {
      // GETDEL is atomic: of concurrent redeemers exactly one gets the value. An expired token is
      // deleted too, which nobody can observe (it would never redeem again anyway).
      const value = await redis.getdel(keys.token(appId, tokenHash));
      return value !== null && decodeToken(appId, tokenHash, value).expiresAtMs > nowMs;
    },
  };
}

/** Whether a packed code is the one whose id has this stamp. */
function isCode(value: Buffer, stamp: Buffer): boolean {
  return value.subarray(value.length - stamp.length).equals(stamp);
}

// "<expiresAtMs>|<channel>|<purposes>|<verification id>|<to>": `to` last, so it needs no escaping.
function encodeToken(token: TokenRecord): string {
  return `${token.expiresAtMs}|${token.channel}|${token.purposes.join(",")}|${token.verificationId}|${token.to}`;
}

function decodeToken(appId: string, tokenHash: string, value: string): TokenRecord {
  const [expiresAtMs, channel, purposes, verificationId, ...to] = value.split("|");
  return {
    tokenHash,
    appId,
    verificationId: verificationId ?? "",
    channel: channel as Channel,
    to: to.join("|"),
    purposes: (purposes ?? "").split(",") as Purpose[],
    expiresAtMs: Number(expiresAtMs),
  };
}
