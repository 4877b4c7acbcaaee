/**
 * Row shapes the SQL backends share (SQLite and PostgreSQL use the same column names) and their
 * mapping to core records, written once.
 */
import type { DevInboxMessage, SendDecision, SendLogEntry, Session } from "../core/ports.js";
import type { Channel, OutboxMessage, Purpose } from "../core/types.js";

export interface SendLogRow {
  at: number;
  app_id: string;
  face: string;
  channel: Channel | null;
  recipient: string | null;
  country: string | null;
  ip: string | null;
  device_id: string | null;
  purpose: Purpose | null;
  decision: SendDecision;
  reason: string | null;
  shadowed: string | null;
  verification_id: string | null;
  decision_count: number;
}

/** The send_log columns an entry fills, in the order of `sendLogRowValues`. */
export const SEND_LOG_COLUMNS = [
  "at",
  "app_id",
  "face",
  "channel",
  "recipient",
  "country",
  "ip",
  "device_id",
  "purpose",
  "decision",
  "reason",
  "shadowed",
  "verification_id",
  "decision_count",
] as const;

/** An entry as the values of `SEND_LOG_COLUMNS`, for both SQL backends. */
export function sendLogRowValues(entry: SendLogEntry): (string | number | null)[] {
  return [
    entry.atMs,
    entry.appId,
    entry.face,
    entry.channel ?? null,
    entry.to ?? null,
    entry.country ?? null,
    entry.ip ?? null,
    entry.deviceId ?? null,
    entry.purpose ?? null,
    entry.decision,
    entry.reason ?? null,
    entry.shadowed ? entry.shadowed.join(",") : null,
    entry.verificationId ?? null,
    entry.count ?? 1,
  ];
}

export function sendLogEntryFromRow(row: SendLogRow): SendLogEntry {
  return {
    atMs: row.at,
    appId: row.app_id,
    face: row.face,
    ...(row.channel ? { channel: row.channel } : {}),
    ...(row.recipient ? { to: row.recipient } : {}),
    ...(row.purpose ? { purpose: row.purpose } : {}),
    decision: row.decision,
    ...(row.country ? { country: row.country } : {}),
    ...(row.ip ? { ip: row.ip } : {}),
    ...(row.device_id ? { deviceId: row.device_id } : {}),
    ...(row.reason ? { reason: row.reason } : {}),
    ...(row.shadowed ? { shadowed: row.shadowed.split(",") } : {}),
    ...(row.verification_id ? { verificationId: row.verification_id } : {}),
    ...(row.decision_count > 1 ? { count: row.decision_count } : {}),
  };
}

export interface OutboxRow {
  id: string;
  app_id: string;
  verification_id: string;
  channel: Channel;
  recipient: string;
  purpose: Purpose;
  locale: string;
  sealed_code: string | null;
  created_at: number;
  deliver_before: number;
  attempts: number;
  /** the providers of the message's unconfirmed tries, comma-separated (ids have no commas) */
  unconfirmed_by?: string | null;
}

/**
 * The claim's column of the providers a message's earlier tries reached without an answer (a
 * delivery record not `failed`: `unconfirmed`, or what a receipt made of it), which the worker must
 * not try again; `aggregate` joins their ids with commas in the backend's dialect. Looked up only
 * from a message's second claim on (through deliveries_verification): a first claim, the usual
 * case, has no earlier try and costs nothing more.
 */
export function unconfirmedByColumn(outbox: string, aggregate: string): string {
  return `CASE WHEN ${outbox}.attempts > 1 THEN (
      SELECT ${aggregate} FROM deliveries d
      WHERE d.verification_id = ${outbox}.verification_id AND d.message_id = ${outbox}.id
        AND d.status <> 'failed'
    ) END AS unconfirmed_by`;
}

/** Claimed rows as messages; a row whose sealed code is already erased has nothing to deliver. */
export function outboxMessagesFromRows(rows: readonly OutboxRow[]): OutboxMessage[] {
  return rows.flatMap((row) =>
    row.sealed_code === null
      ? []
      : [
          {
            id: row.id,
            appId: row.app_id,
            verificationId: row.verification_id,
            channel: row.channel,
            to: row.recipient,
            purpose: row.purpose,
            locale: row.locale,
            sealedCode: row.sealed_code,
            createdAtMs: row.created_at,
            deliverBeforeMs: row.deliver_before,
            attempts: row.attempts,
            ...(row.unconfirmed_by ? { unconfirmedBy: row.unconfirmed_by.split(",") } : {}),
          },
        ],
  );
}

export interface SessionRow {
  token_hash: string;
  app_id: string;
  account_id: string;
  expires_at: number;
  credential_version: number;
  chain: string | null;
}

export function sessionFromRow(row: SessionRow | undefined): Session | null {
  return row
    ? {
        tokenHash: row.token_hash,
        appId: row.app_id,
        accountId: row.account_id,
        expiresAtMs: row.expires_at,
        credentialVersion: row.credential_version,
        ...(row.chain ? { chain: row.chain } : {}),
      }
    : null;
}

export interface DevInboxRow {
  id: string;
  app_id: string;
  channel: Channel;
  recipient: string;
  subject: string;
  text: string;
  code: string;
  created_at: number;
}

export function devInboxMessageFromRow(row: DevInboxRow): DevInboxMessage {
  return {
    id: row.id,
    appId: row.app_id,
    channel: row.channel,
    to: row.recipient,
    subject: row.subject,
    text: row.text,
    code: row.code,
    createdAtMs: row.created_at,
  };
}
