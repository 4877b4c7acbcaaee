import type { Redis } from "ioredis";
import type {
  AttemptOutcome,
  AttemptRefusal,
  CounterKind,
  IssueOutcome,
  IssueRequest,
  VerificationStore,
} from "../../core/ports.js";
import { outranks } from "../../core/rate-limit/refusals.js";
import type { Channel, Purpose, TokenRecord } from "../../core/types.js";
import { decodeCode, encodeCode } from "./redis-code-codec.js";
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
 * `request.outbox`; `withdraw` undoes an `issue` whose outbox row could not be committed.
 */
export interface RedisVerificationStore extends Omit<VerificationStore, "deliveries"> {
  /**
   * Atomically deletes the issued code, its slot pointer and its idempotency entry (if they still
   * name it) and refunds the counters `issue` counted. The superseded code is not restored.
   */
  withdraw(request: IssueRequest, nowMs: number): Promise<void>;
}

/**
 * The codes, counters, idempotency keys and tokens of the cluster mode in Redis. Every method is
 * one round trip: a Lua script (atomic) or a single command. Same semantics as the SQLite store.
 */
export function createRedisVerificationStore(client: Redis, keys: RedisKeys): RedisVerificationStore {
  const redis = withScripts(client);

  const issueKeys = (request: IssueRequest): string[] => [
    keys.code(request.appId, request.code.id),
    keys.slot(request.appId, request.slotKey),
    keys.idempotency(request.appId, request.idempotency?.key ?? ""),
    ...request.counters.map((counter) => keys.counter(request.appId, counter.key)),
  ];

  return {
    async issue(request, nowMs): Promise<IssueOutcome> {
      const { appId, code, counters } = request;
      const argv: (string | number | Buffer)[] = [
        nowMs,
        encodeCode(code),
        ttlMs(code.expiresAtMs + CODE_GRACE_MS, nowMs),
        keys.app(appId),
        code.id,
        // a fingerprint is a sha256 hex, never empty, so '' can mean "no idempotency key"
        request.idempotency?.fingerprint ?? "",
        IDEMPOTENCY_TTL_MS,
      ];
      for (const counter of counters) {
        const kind = counter.kind ?? "limit";
        const flags = `${counter.shadow ? "s" : ""}${!counter.shadow && kind === "limit" ? "l" : ""}`;
        argv.push(counter.limit, counter.windowSeconds * 1000, counter.increment ?? 1, flags || "-");
      }
      const issueKeyList = issueKeys(request);
      const reply = replyArray(await redis.vdIssueBuffer(issueKeyList.length, ...issueKeyList, ...argv));
      const kind = replyText(reply[0]);
      if (kind === "replayed") {
        const id = replyText(reply[1]);
        return {
          kind: "replayed",
          record: decodeCode(appId, id, replyBuffer(reply[2])),
          resendAfterSeconds: replyNumber(reply[3]),
          fingerprint: replyText(reply[4]),
        };
      }
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

    async withdraw(request, nowMs) {
      const withdrawKeys = issueKeys(request);
      await redis.vdWithdraw(
        withdrawKeys.length,
        ...withdrawKeys,
        nowMs,
        request.code.id,
        ...request.counters.map((counter) => (counter.increment === 0 ? 0 : 1)),
      );
    },

    async consumeAttempt(ref, budget, nowMs): Promise<AttemptOutcome> {
      const bySlot = "slotKey" in ref;
      const key = bySlot ? keys.slot(ref.appId, ref.slotKey) : keys.code(ref.appId, ref.id);
      const reply = replyArray(
        await redis.vdConsumeAttemptBuffer(
          1,
          key,
          nowMs,
          bySlot ? 1 : 0,
          keys.app(ref.appId),
          budget.limit,
          budget.windowSeconds * 1000,
        ),
      );
      const kind = replyText(reply[0]);
      if (kind === "not_found") return { kind: "not_found" };
      if (kind === "counted") {
        const id = bySlot ? replyText(reply[2]) : ref.id;
        return { kind: "counted", record: decodeCode(ref.appId, id, replyBuffer(reply[1])) };
      }
      const id = bySlot ? replyText(reply[3]) : ref.id;
      const reason = REFUSAL_BY_STATUS[replyText(reply[1])];
      if (!reason) throw new Error(`unexpected refusal ${replyText(reply[1])}`);
      const record = decodeCode(ref.appId, id, replyBuffer(reply[2]));
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
      const approved = await redis.vdApprove(
        3,
        keys.code(appId, id),
        keys.token(appId, token.tokenHash),
        keys.counter(appId, failureKey),
        nowMs,
        encodeToken(token),
        ttlMs(token.expiresAtMs, nowMs),
      );
      return replyNumber(approved) === 1;
    },

    async refundFailure(appId, failureKey, nowMs) {
      await redis.vdRefund(1, keys.counter(appId, failureKey), nowMs);
    },

    async get(appId, id) {
      const value = await redis.getBuffer(keys.code(appId, id));
      return value ? decodeCode(appId, id, value) : null;
    },

    async cancel(appId, id) {
      const value = await redis.vdCancelBuffer(1, keys.code(appId, id));
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
