import type { SlotAddress } from "../ports.js";
import { foldedAddress } from "../recipients.js";
import type { CodeSecrets } from "../secrets.js";
import type { Channel, Purpose } from "../types.js";

/**
 * App-relative keys of the hot state. Stores prefix them with the app (Redis puts it in a `{app}`
 * hash tag so one operation's keys share a cluster slot).
 *
 * A slot's key: the (channel, recipient, purpose) that holds at most one pending code. Of the
 * recipient (`foldedAddress`), not of one spelling of it, so a code sent to `Ann@` supersedes the
 * one sent to `ann@`, and a check by recipient finds it whatever case the user types; the code
 * still goes to the address as given.
 */
export function slotKey(channel: Channel, address: string, purpose: Purpose): string {
  return `${channel}:${foldedAddress(channel, address)}:${purpose}`;
}

/**
 * A slot as a send or a check by recipient hands it to a store: its key, the key builds before the
 * fold filed it under where that differs (`SlotAddress.formerSlotKey`: only an address typed with
 * capitals has one, so the usual one costs nothing more), and their tags, made on first read: only
 * stores keyed by tag (Redis) read them, and each is a keyed hash per secret. A class rather than a
 * literal with a getter, for the reason `LazyIssueRequest` (send-code.ts) gives.
 */
export class Slot implements SlotAddress {
  readonly slotKey: string;
  readonly formerSlotKey: string | undefined;
  private tags: string[] | undefined;

  constructor(
    readonly appId: string,
    channel: Channel,
    address: string,
    purpose: Purpose,
    private readonly secrets: CodeSecrets,
  ) {
    this.slotKey = slotKey(channel, address, purpose);
    const asTyped = `${channel}:${address}:${purpose}`;
    this.formerSlotKey = asTyped === this.slotKey ? undefined : asTyped;
  }

  get slotTags(): string[] {
    if (this.tags) return this.tags;
    const tags = this.secrets.slotTags(this.appId, this.slotKey);
    if (this.formerSlotKey !== undefined) tags.push(...this.secrets.slotTags(this.appId, this.formerSlotKey));
    this.tags = tags;
    return tags;
  }
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
 * Failed checks per recipient across codes, so resending does not reset the guessing budget. Of
 * the recipient (`foldedAddress`), so the budget is an account's: `ANN@` and `ann@` sign in to one
 * account, and five spellings had five budgets. The Redis check script works the same key out
 * from the stored address (redis-scripts.ts, Lua's ASCII-only `string.lower`).
 */
export function failedChecksKey(channel: Channel, address: string): string {
  return `f:${channel}:${foldedAddress(channel, address)}`;
}
