import type { Channel, CodeRecord, Purpose, StoredStatus } from "../../core/types.js";

/**
 * A code packed into one compact Redis string (DESIGN goal: <= 200 bytes of Redis memory per live
 * code). Layout, UTF-8 text then the raw 32-byte HMAC:
 *
 *   <status><attempts>,<maxAttempts>,<expiresAt base36>,<channel><bytes of to>:<to>
 *   <purpose>|<token purposes, empty = the purpose>|<expiresAt - createdAt, base36>|<locale>|<accountId><hash>
 *
 * The header up to `<to>` is what the Lua scripts read and rewrite (status, attempts, expiry, the
 * recipient for the failure counter); they keep the rest byte for byte. `to` is length-prefixed and
 * accountId is the last text field, so neither needs escaping. Timestamps are base36 (8 characters
 * instead of 13) and the HMAC raw instead of hex: both only to stay small.
 */
const STATUS_TO_CHAR: Record<StoredStatus, string> = {
  pending: "p",
  approved: "a",
  canceled: "c",
  superseded: "s",
};
const CHAR_TO_STATUS: Record<string, StoredStatus> = {
  p: "pending",
  a: "approved",
  c: "canceled",
  s: "superseded",
};
const CHANNEL_TO_CHAR: Record<Channel, string> = { email: "e", sms: "s" };
const CHAR_TO_CHANNEL: Record<string, Channel> = { e: "email", s: "sms" };
const HASH_BYTES = 32;
const HEADER = /^([pacs])(\d+),(\d+),([0-9a-z]+),([es])(\d+):/;

/** Packs a code; the record's `id` and `appId` are in its key, not its value. */
export function encodeCode(record: CodeRecord): Buffer {
  if (!/^[0-9a-f]{64}$/.test(record.codeHash)) {
    throw new Error("codeHash must be a hex HMAC-SHA256");
  }
  const tokenPurposes =
    record.tokenPurposes.length === 1 && record.tokenPurposes[0] === record.purpose
      ? ""
      : record.tokenPurposes.join(",");
  const text =
    `${STATUS_TO_CHAR[record.status]}${record.attempts},${record.maxAttempts},` +
    `${record.expiresAtMs.toString(36)},${CHANNEL_TO_CHAR[record.channel]}${Buffer.byteLength(record.to)}:` +
    `${record.to}${record.purpose}|${tokenPurposes}|${(record.expiresAtMs - record.createdAtMs).toString(36)}|` +
    `${record.locale}|${record.accountId ?? ""}`;
  return Buffer.concat([Buffer.from(text, "utf8"), Buffer.from(record.codeHash, "hex")]);
}

/** Unpacks what `encodeCode` wrote (possibly with status and attempts rewritten by a script). */
export function decodeCode(appId: string, id: string, value: Buffer): CodeRecord {
  const text = value.subarray(0, value.length - HASH_BYTES);
  const header = HEADER.exec(text.toString("latin1"));
  if (!header) throw new Error(`malformed code record ${id}`);
  const [
    whole = "",
    status = "",
    attempts = "",
    maxAttempts = "",
    expires36 = "",
    channel = "",
    toBytes = "",
  ] = header;
  // The header is ASCII, so its latin1 length is its byte length; `to` is counted in bytes.
  const toStart = whole.length;
  const toEnd = toStart + Number(toBytes);
  const to = text.subarray(toStart, toEnd).toString("utf8");
  const rest = text.subarray(toEnd).toString("utf8").split("|");
  const [purpose = "", tokenPurposes = "", lifetime36 = "", locale = ""] = rest;
  const accountId = rest.slice(4).join("|");
  const expiresAtMs = Number.parseInt(expires36, 36);
  return {
    id,
    appId,
    channel: CHAR_TO_CHANNEL[channel] as Channel,
    to,
    purpose: purpose as Purpose,
    tokenPurposes: (tokenPurposes === "" ? [purpose] : tokenPurposes.split(",")) as Purpose[],
    codeHash: value.subarray(value.length - HASH_BYTES).toString("hex"),
    status: CHAR_TO_STATUS[status] as StoredStatus,
    attempts: Number(attempts),
    maxAttempts: Number(maxAttempts),
    createdAtMs: expiresAtMs - Number.parseInt(lifetime36, 36),
    expiresAtMs,
    locale,
    ...(accountId ? { accountId } : {}),
  };
}
