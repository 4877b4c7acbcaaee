import type { Channel, Purpose } from "../types.js";

/**
 * App-relative keys of the hot state. Stores prefix them with the app (Redis puts it in a `{app}`
 * hash tag so one operation's keys share a cluster slot).
 */
export function slotKey(channel: Channel, address: string, purpose: Purpose): string {
  return `${channel}:${address}:${purpose}`;
}

/** The parts of a `slotKey`: a channel and a purpose never hold ':', an address may. */
export function parseSlotKey(key: string): { channel: Channel; address: string; purpose: Purpose } {
  const first = key.indexOf(":");
  const last = key.lastIndexOf(":");
  return {
    channel: key.slice(0, first) as Channel,
    address: key.slice(first + 1, last),
    purpose: key.slice(last + 1) as Purpose,
  };
}

/** A per-recipient send counter: of a mailbox (`mailboxOf`), not of one spelling of it. */
export function recipientCounterKey(channel: Channel, mailbox: string, windowSeconds: number): string {
  return `r:${channel}:${mailbox}:${windowSeconds}`;
}

export function ipCounterKey(ip: string, windowSeconds: number): string {
  return `ip:${ip}:${windowSeconds}`;
}

/**
 * A risk rule's counter (captcha escalation) of an IP, subnet or device. The subject comes before
 * the word "risk" so that an IP's risk counter sorts next to its rate counter (`ipCounterKey`):
 * stores keeping counters in key order (SQLite) then write one page for both instead of two
 * random ones, which is what a send to a new client costs most.
 */
export function riskCounterKey(
  scope: "ip" | "subnet" | "device",
  subject: string,
  windowSeconds: number,
): string {
  return `${scope}:${subject}:risk:${windowSeconds}`;
}

export function appCounterKey(windowSeconds: number): string {
  return `app:${windowSeconds}`;
}

/**
 * Failed checks per recipient across codes, so resending does not reset the guessing budget. An
 * email address is folded as accounts fold it (ASCII case: `lower()` in SQLite and in PostgreSQL's
 * "C" collation), so the budget is an account's: `ANN@` and `ann@` sign in to one account, and
 * five spellings had five budgets. Not per mailbox: `ann+x@` is another account. The Redis check
 * script works the same key out from the stored address (redis-scripts.ts, Lua's ASCII-only
 * `string.lower`).
 */
export function failedChecksKey(channel: Channel, address: string): string {
  return `f:${channel}:${channel === "email" ? address.replace(ASCII_CAPITALS, (capital) => capital.toLowerCase()) : address}`;
}
const ASCII_CAPITALS = /[A-Z]+/g;
