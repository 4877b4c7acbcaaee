import { formatVerificationId, parseVerificationId, VERIFICATION_STAMP_BYTES } from "../../core/ids.js";
import type { Channel, CodeRecord, Purpose, StoredStatus } from "../../core/types.js";

/**
 * A code packed into one compact Redis string (issue #8: <= 200 bytes of Redis memory per live
 * code, key included). Layout, UTF-8 text, then the raw 32-byte HMAC and the verification id's
 * stamp (its 9 time characters and 18 raw random bytes, `parseVerificationId`):
 *
 *   <status><attempts>,<maxAttempts>,<expiresAt base36>,<channel><bytes of to>:<to>
 *   <purpose><token purposes, none = the purpose>|<expiresAt - createdAt, base36>|<locale>|<accountId>
 *   <hash><id stamp>
 *
 * The header up to `<to>` is what the Lua scripts read and rewrite (status, attempts, expiry, the
 * recipient for the failure counter); they keep the rest byte for byte. `to` is length-prefixed and
 * accountId is the last text field, so neither needs escaping. Left out because the key gives it:
 * the app (its `{app}` hash tag) and the id's slot tag (the key is `s:<tag>`, or `c:<id>`); the
 * stamp stays because it tells the slot's newest code from an older id of the same slot.
 * Purposes are one letter each, timestamps base36 (8 characters instead of 13) and the HMAC raw
 * instead of hex: all only to stay small.
 */
const STATUS_TO_CHAR: Record<StoredStatus, string> = {
  pending: "p",
  approved: "a",
  canceled: "c",
  superseded: "s",
};
const CHAR_TO_STATUS = invert(STATUS_TO_CHAR);
const CHANNEL_TO_CHAR: Record<Channel, string> = { email: "e", sms: "s" };
const CHAR_TO_CHANNEL = invert(CHANNEL_TO_CHAR);
// One letter per purpose; a Record so a new purpose fails the type-check until it has one.
const PURPOSE_TO_CHAR: Record<Purpose, string> = {
  sign_up: "u",
  sign_in: "i",
  reset_password: "r",
  reset_payment_password: "y",
  bind_contact: "b",
  change_contact: "c",
  change_password: "w",
  delete_account: "d",
  reverify: "v",
  generic: "g",
};
const CHAR_TO_PURPOSE = invert(PURPOSE_TO_CHAR);
const HASH_BYTES = 32;
/** Raw bytes after the text: the HMAC, then the id's stamp (the Lua scripts read the latter). */
export const CODE_TAIL_BYTES = HASH_BYTES + VERIFICATION_STAMP_BYTES;
const HEADER = /^([pacs])(\d+),(\d+),([0-9a-z]+),([es])(\d+):/;

/** Packs a code; its `appId` and the slot tag of its `id` are in its key, not its value. */
export function encodeCode(record: CodeRecord): Buffer {
  if (!/^[0-9a-f]{64}$/.test(record.codeHash)) {
    throw new Error("codeHash must be a hex HMAC-SHA256");
  }
  const id = parseVerificationId(record.id);
  if (!id) throw new Error(`not a verification id: ${record.id}`);
  const tokenPurposes =
    record.tokenPurposes.length === 1 && record.tokenPurposes[0] === record.purpose
      ? ""
      : record.tokenPurposes.map((purpose) => PURPOSE_TO_CHAR[purpose]).join("");
  const text =
    `${STATUS_TO_CHAR[record.status]}${record.attempts},${record.maxAttempts},` +
    `${record.expiresAtMs.toString(36)},${slotSignature(record.channel, record.to, record.purpose)}` +
    `${tokenPurposes}|${(record.expiresAtMs - record.createdAtMs).toString(36)}|` +
    `${record.locale}|${record.accountId ?? ""}`;
  return Buffer.concat([Buffer.from(text, "utf8"), Buffer.from(record.codeHash, "hex"), id.stamp]);
}

/**
 * The part of a packed code that names its slot: `<channel><bytes of to>:<to><purpose>`. The
 * consumeAttempt script compares it, so a slot's lookup never takes another slot's code even if
 * their tags collide.
 */
export function slotSignature(channel: Channel, to: string, purpose: Purpose): string {
  return `${CHANNEL_TO_CHAR[channel]}${Buffer.byteLength(to)}:${to}${PURPOSE_TO_CHAR[purpose]}`;
}

/** The id of a code found under its slot's key: the slot's tag and the stamp it stores. */
export function idOfCode(slotTag: string, value: Buffer): string {
  return formatVerificationId(slotTag, value.subarray(value.length - VERIFICATION_STAMP_BYTES));
}

/** Unpacks what `encodeCode` wrote (possibly with status and attempts rewritten by a script). */
export function decodeCode(appId: string, id: string, value: Buffer): CodeRecord {
  const text = value.subarray(0, value.length - CODE_TAIL_BYTES);
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
  const [purposes = "", lifetime36 = "", locale = ""] = rest;
  const accountId = rest.slice(3).join("|");
  const purpose = CHAR_TO_PURPOSE[purposes.charAt(0)] as Purpose;
  const expiresAtMs = Number.parseInt(expires36, 36);
  return {
    id,
    appId,
    channel: CHAR_TO_CHANNEL[channel] as Channel,
    to,
    purpose,
    tokenPurposes:
      purposes.length === 1
        ? [purpose]
        : [...purposes.slice(1)].map((char) => CHAR_TO_PURPOSE[char] as Purpose),
    codeHash: value.subarray(text.length, text.length + HASH_BYTES).toString("hex"),
    status: CHAR_TO_STATUS[status] as StoredStatus,
    attempts: Number(attempts),
    maxAttempts: Number(maxAttempts),
    createdAtMs: expiresAtMs - Number.parseInt(lifetime36, 36),
    expiresAtMs,
    locale,
    ...(accountId ? { accountId } : {}),
  };
}

function invert(map: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(map).map(([name, char]) => [char, name]));
}
