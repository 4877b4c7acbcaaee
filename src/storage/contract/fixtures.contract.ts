import { randomBytes } from "node:crypto";
import { newVerificationId } from "../../core/ids.js";
import type { CodeRef, CounterCheck, IssueRequest } from "../../core/ports.js";
import { CodeSecrets } from "../../core/secrets.js";
import type { Channel, CodeRecord, OutboxMessage, Purpose, TokenRecord } from "../../core/types.js";
import { Slot, slotKey } from "../../core/verification/keys.js";

/**
 * Builders shared by the contract suites: valid records with unique ids, overridable per case.
 * (Named `.contract.ts`, like the suites, so the build leaves it out of dist.)
 */
export function uniqueId(prefix: string): string {
  return `${prefix}_${randomBytes(12).toString("base64url")}`;
}

export function hexHash(): string {
  return randomBytes(32).toString("hex");
}

/** The secret the suites' verification ids and slot tags are made under, as core makes them. */
export const CONTRACT_SECRETS = new CodeSecrets(["contract-suite-secret-not-for-production"]);

/**
 * A pending code; unless `fields` name an id, its id is minted as core mints it (tagged with its
 * slot under the newest of `secrets`).
 */
export function codeRecord(
  appId: string,
  nowMs: number,
  fields: Partial<CodeRecord> = {},
  secrets: CodeSecrets = CONTRACT_SECRETS,
): CodeRecord {
  const record: CodeRecord = {
    id: "",
    appId,
    channel: "email",
    to: "ann@example.com",
    purpose: "sign_in",
    tokenPurposes: ["sign_in"],
    codeHash: hexHash(),
    status: "pending",
    attempts: 0,
    maxAttempts: 5,
    createdAtMs: nowMs,
    expiresAtMs: nowMs + 600_000,
    locale: "en",
    ...fields,
  };
  if (fields.id !== undefined) return record;
  const [tag = ""] = secrets.slotTags(appId, slotKey(record.channel, record.to, record.purpose));
  return { ...record, id: newVerificationId(tag, record.createdAtMs) };
}

/** A check by recipient: the slot's pending code, by its key and its tags under `secrets`. */
export function slotRef(
  appId: string,
  channel: Channel,
  to: string,
  purpose: Purpose,
  secrets: CodeSecrets = CONTRACT_SECRETS,
): Extract<CodeRef, { slotKey: string }> {
  const slot = new Slot(appId, channel, to, purpose, secrets);
  const { formerSlotKey } = slot;
  return {
    appId,
    slotKey: slot.slotKey,
    ...(formerSlotKey === undefined ? {} : { formerSlotKey }),
    slotTags: slot.slotTags,
  };
}

export function outboxFor(record: CodeRecord, fields: Partial<OutboxMessage> = {}): OutboxMessage {
  return {
    id: uniqueId("msg"),
    appId: record.appId,
    verificationId: record.id,
    channel: record.channel,
    to: record.to,
    purpose: record.purpose,
    locale: record.locale,
    sealedCode: randomBytes(40).toString("base64"),
    createdAtMs: record.createdAtMs,
    deliverBeforeMs: record.expiresAtMs,
    attempts: 0,
    ...fields,
  };
}

/** An issue request for `record` with a queued message (or none for a test recipient). */
export function issueRequest(
  record: CodeRecord,
  counters: CounterCheck[] = [],
  options: {
    outbox?: boolean;
    idempotency?: { key: string; fingerprint: string; replayOnly?: boolean };
    /** the secrets the slot's tags are made under (default CONTRACT_SECRETS) */
    secrets?: CodeSecrets;
  } = {},
): IssueRequest {
  const slot = slotRef(record.appId, record.channel, record.to, record.purpose, options.secrets);
  return {
    appId: record.appId,
    counters,
    slotKey: slot.slotKey,
    ...(slot.formerSlotKey === undefined ? {} : { formerSlotKey: slot.formerSlotKey }),
    slotTags: slot.slotTags,
    code: record,
    outbox: options.outbox === false ? null : outboxFor(record),
    ...(options.idempotency ? { idempotency: options.idempotency } : {}),
  };
}

export function counter(
  key: string,
  limit: number,
  windowSeconds: number,
  fields: Partial<CounterCheck> = {},
): CounterCheck {
  return { key, limit, windowSeconds, rule: `${key}:${limit}/${windowSeconds}s`, ...fields };
}

export function tokenFor(record: CodeRecord, nowMs: number, fields: Partial<TokenRecord> = {}): TokenRecord {
  return {
    tokenHash: hexHash(),
    appId: record.appId,
    verificationId: record.id,
    channel: record.channel,
    to: record.to,
    purposes: record.tokenPurposes,
    expiresAtMs: nowMs + 600_000,
    ...fields,
  };
}

/** A time base per test, in whole seconds, so windows and TTLs are easy to reason about. */
export function baseTime(): number {
  return Math.floor(Date.now() / 1000) * 1000;
}
