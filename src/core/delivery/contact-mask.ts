import { domainToASCII, domainToUnicode } from "node:url";
import { parsePhoneNumberFromString } from "libphonenumber-js/max";
import { maskAddress } from "../recipients.js";
import type { Channel } from "../types.js";
import { MAX_PROVIDER_ERROR_CHARS } from "./provider-text.js";

/**
 * A provider's error text fit for the log and the delivery record (which `GET /v1/verifications/{id}`
 * shows): providers quote the recipient ("550 5.1.1 <Ann.Lee@corp.example>: Recipient address
 * rejected", "The 'To' number +12025550143 is not a valid phone number") and may echo the message
 * with its code. The text is first cut (the record keeps 1,000 characters; the matching below is
 * linear, but a provider's whole HTML page is not worth scanning) and read as a person would:
 * percent-escapes decoded, compatibility forms folded (full-width digits, non-breaking hyphens).
 * Then the recipient becomes its masked form and the code `[code]`:
 * - an email address in any case, with its domain in either IDNA form, and its local part alone;
 * - a phone number as its national significant number among digits that at most three other
 *   characters apart ("+1 (202) 555-0143", "202/555/0143"), with whatever digits run with it;
 * - the code among digits at most one character apart ("955 377").
 */
export function withoutRecipient(text: string, channel: Channel, to: string, code: string): string {
  let clean = readable(text);
  if (channel === "email") {
    // The address as the text now reads it too: one given with full-width letters or an escape
    // ("ａｎｎ@", "ann%41@") is quoted back folded.
    const folded = readable(to);
    clean = withoutEmail(clean, to);
    if (folded !== to) clean = withoutEmail(clean, folded, maskAddress("email", to));
  } else {
    const national = parsePhoneNumberFromString(to)?.nationalNumber ?? to.replace(/\D/g, "");
    clean = maskDigitRuns(clean, national, 3, () => maskAddress("sms", to), true);
  }
  return code ? maskDigitRuns(clean, code, 1, () => "[code]", false) : clean;
}

/**
 * A status callback's error text, where the recipient and the code are not known: every email
 * address, every phone number (a "+" and seven digits or more, or ten digits or more) and digits
 * that follow the word "code" (but not "error code") are masked. A provider's error code ("error
 * 30003", "HTTP 400 21211", "ErrorCode=4001002") stays.
 */
export function withoutContacts(text: string): string {
  return readable(text)
    .replace(/[^\s<>"'(),;:@=]{1,64}@[^\s<>"'(),;:@]{1,253}/g, (address) => maskAddress("email", address))
    .replace(/\+\d(?:[^\d\n]{0,3}\d){6,}|\d(?:[^\d\n]{0,3}\d){9,}/g, "[number]")
    .replace(/(?<!error[\W_]{0,3})(code\D{0,12}?)\d(?:\D?\d){3,9}/gi, "$1[code]");
}

/** Cut, percent-escapes decoded and compatibility forms folded. */
function readable(text: string): string {
  return (
    text
      .slice(0, 4 * MAX_PROVIDER_ERROR_CHARS)
      .replace(/(?:%[0-9A-Fa-f]{2})+/g, (escaped) => {
        try {
          return decodeURIComponent(escaped);
        } catch {
          return escaped;
        }
      })
      // Quoted-printable's "@" and "." (a relay quoting a message body), only where they make an
      // address: "=40" in plain text ("retry=40s", "max=40") is no escape.
      .replace(
        /(?:[\p{L}\p{N}_.+-]|=[0-9A-F]{2}){1,64}=40[\p{L}\p{N}_-]{1,63}(?:(?:\.|=2E)[\p{L}\p{N}_-]{1,63})+/gu,
        (address) =>
          address.replace(/=([0-9A-F]{2})/g, (_, hex: string) =>
            String.fromCharCode(Number.parseInt(hex, 16)),
          ),
      )
      .normalize("NFKC")
  );
}

function withoutEmail(text: string, address: string, masked = maskAddress("email", address)): string {
  const at = address.lastIndexOf("@");
  const local = address.slice(0, at);
  const domain = address.slice(at + 1);
  let clean = text;
  const spellings = new Set([domain, domainToASCII(domain), domainToUnicode(domain)].filter(Boolean));
  for (const spelling of spellings) {
    clean = clean.replace(new RegExp(escapeRegExp(`${local}@${spelling}`), "gi"), masked);
  }
  // The local part alone, where a relay names the mailbox without its domain ("user victim.person
  // unknown"); a short one is left, as it would mask ordinary words.
  if (local.length >= 4) {
    clean = clean.replace(new RegExp(`(?<![\\w.+-])${escapeRegExp(local)}(?![\\w+-])`, "gi"), masked);
  }
  return clean;
}

/**
 * Replaces runs of digits at most `gap` other characters apart whose digits contain `target`: the
 * whole run (with a "+" before it) when `wholeRun`, else only the matched digits. One pass.
 */
function maskDigitRuns(
  text: string,
  target: string,
  gap: number,
  replacement: () => string,
  wholeRun: boolean,
): string {
  if (target.length === 0) return text;
  let out = "";
  let copiedTo = 0;
  let digits = "";
  let positions: number[] = [];
  const flush = () => {
    // Every copy in the run ("955377 955377"), or the run once when it goes whole.
    for (
      let found = digits.indexOf(target);
      found >= 0;
      found = digits.indexOf(target, found + target.length)
    ) {
      let start = positions[wholeRun ? 0 : found] as number;
      const end = (positions[wholeRun ? positions.length - 1 : found + target.length - 1] as number) + 1;
      if (wholeRun && text[start - 1] === "+") start -= 1;
      out += text.slice(copiedTo, start) + replacement();
      copiedTo = end;
      if (wholeRun) break;
    }
    digits = "";
    positions = [];
  };
  for (let index = 0; index < text.length; index++) {
    const char = text.charCodeAt(index);
    if (char < 48 || char > 57) continue;
    if (positions.length > 0 && index - (positions[positions.length - 1] as number) - 1 > gap) flush();
    digits += text[index];
    positions.push(index);
  }
  flush();
  return out + text.slice(copiedTo);
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
