import { type CountryCode, isSupportedCountry, parsePhoneNumberFromString } from "libphonenumber-js/max";
import { invalidField } from "./errors.js";
import type { Channel, Recipient } from "./types.js";

const MAX_EMAIL_LENGTH = 254;
// Deliberately simple: one @, a non-empty local part without spaces, a dotted domain. Full RFC 5322
// parsing accepts addresses no mail provider delivers to; this refuses the typos users make.
// The domain is dot-separated labels, none empty; one trailing dot (the DNS root: `gmail.com.`
// is `gmail.com`) is dropped before the pattern sees it, and IDNA's other label separators are
// read as dots first (`gmail.com。` is `gmail.com` too).
const EMAIL_PATTERN = /^[^\s@"(),:;<>[\\\]]+@(?:[^\s@"(),:;<>[\\\].]+\.)+[^\s@"(),:;<>[\\\].]{2,}$/;
// NUL, escapes, DEL: nothing a mailbox name holds, and PostgreSQL cannot even store a NUL. Nor
// U+FFFD, what the body's bytes became where they were not UTF-8, or a lone surrogate: such an
// address is garbled, and a code sent there would go to someone else or nowhere. Nor invisible
// format characters (zero-width space, soft hyphen, a right-to-left override): they make one
// address look like another, in the masked `to` an answer echoes too. A domain may hold the
// zero-width (non-)joiner where IDNA2008 allows it (Persian names, Indic ones after a virama),
// which the URL parser's own IDNA checks tell (`joinersAllowed`); anywhere else it only disguises.
const NOT_IN_A_LOCAL_PART = /[\p{Cc}\p{Cs}\p{Cf}\uFFFD]/u;
const NOT_IN_A_DOMAIN = /[\p{Cc}\p{Cs}\uFFFD]|(?![\u200C\u200D])\p{Cf}/u;
const JOINERS = /[\u200C\u200D]/;
const PRINTABLE_ASCII = /^[\x20-\x7e]*$/;
// What IDNA reads as the dot between labels: the ideographic, fullwidth and halfwidth full stops.
const LABEL_SEPARATORS = /[\u3002\uFF0E\uFF61]/g;
const COUNTRY_PATTERN = /^[A-Z]{2}$/;

/**
 * Normalises an email (domain lower-cased) or a phone number (E.164). A phone may be given as
 * E.164, as "+<cc> <number>", or national with `country` (ISO 3166 alpha-2) or the default region.
 * Throws VALIDATION_FAILED naming `field` when the input is not a deliverable address.
 */
export function parseRecipient(
  channel: Channel,
  input: string,
  options: { country?: string | undefined; defaultCountry: string; field?: string },
): Recipient {
  const field = options.field ?? "to";
  const value = input.trim();
  if (channel === "email") {
    const at = value.lastIndexOf("@");
    const local = value.slice(0, Math.max(at, 0));
    let domain = value.slice(at + 1);
    // Most addresses are ASCII: the checks for what only other characters can be are skipped.
    const ascii = PRINTABLE_ASCII.test(value);
    if (!ascii) domain = domain.replace(LABEL_SEPARATORS, ".");
    if (domain.endsWith(".")) domain = domain.slice(0, -1);
    const address = `${local}@${domain}`;
    if (
      at < 0 ||
      address.length > MAX_EMAIL_LENGTH ||
      !EMAIL_PATTERN.test(address) ||
      (!ascii &&
        (NOT_IN_A_LOCAL_PART.test(local) ||
          NOT_IN_A_DOMAIN.test(domain) ||
          (JOINERS.test(domain) && !joinersAllowed(domain))))
    ) {
      throw invalidField(field, `${field} is not a valid email address`);
    }
    return { channel, address: `${local}@${domain.toLowerCase()}` };
  }
  const country = (options.country ?? options.defaultCountry).toUpperCase();
  if (!COUNTRY_PATTERN.test(country))
    throw invalidField("country", "country must be an ISO 3166 alpha-2 code");
  if (value.length > 32 || !/^[+\d\s().-]+$/.test(value)) {
    throw invalidField(field, `${field} is not a valid phone number`);
  }
  // A region with no numbering plan reads no national number: that is `country`'s fault, not
  // `to`'s. An international number ("+86 …", "(+86) …": a "+" before any digit) needs none.
  const region = isSupportedCountry(country) ? (country as CountryCode) : undefined;
  const phone = parsePhoneNumberFromString(value, region);
  if (!phone && region === undefined && !/^[^\d+]*\+/.test(value))
    throw invalidField("country", `country ${country} has no phone numbering plan`);
  // The type costs nothing extra for a valid number: where the metadata has types (the /max set
  // has them for every region), a number is valid exactly when it has one, and `isValid` works the
  // type out to tell. Only a number without one is judged by `isValid` itself.
  const numberType = phone?.getType();
  if (!phone || (numberType === undefined && !phone.isValid())) {
    throw invalidField(field, `${field} is not a valid phone number`);
  }
  return {
    channel,
    address: phone.number,
    callingCode: phone.countryCallingCode,
    ...(phone.country ? { country: phone.country } : {}),
    ...(numberType ? { numberType } : {}),
  };
}

// Gmail delivers a.n.n@ to ann@ (and ann@googlemail.com to ann@gmail.com); other providers keep
// the dots apart.
const GMAIL = "gmail.com";
const GMAIL_DOMAINS = new Set([GMAIL, "googlemail.com"]);

/**
 * The mailbox a normalised address reaches, which per-recipient limits count: mail providers
 * deliver `Ann@`, `ann+1@` and (at Gmail) `a.n.n@` to one inbox, so limits counted per address
 * would let a mail bomb through one variant at a time. The code still goes to the address as
 * given. A phone number is its own mailbox.
 */
export function mailboxOf(channel: Channel, address: string): string {
  if (channel !== "email") return address;
  const at = address.lastIndexOf("@");
  let domain = asciiDomain(address.slice(at + 1));
  let local = address.slice(0, at).toLowerCase();
  const tag = local.indexOf("+");
  if (tag > 0) local = local.slice(0, tag);
  if (GMAIL_DOMAINS.has(domain)) {
    local = local.replaceAll(".", "");
    domain = GMAIL;
  }
  return `${local}@${domain}`;
}

/**
 * The recipient a normalised address is, as accounts match it: an email address with its ASCII
 * capitals folded (`lower()` in SQLite, and in PostgreSQL under the "C" collation; Lua's
 * `string.lower` in the Redis scripts), so `ANN@` and `ann@` are one recipient, with one pending
 * code per purpose and one failed-checks budget. Only ASCII, as those folds are, and not a mailbox
 * (`mailboxOf`): `ann+x@` signs in to another account. A phone number is as it is.
 */
export function foldedAddress(channel: Channel, address: string): string {
  return channel === "email"
    ? address.replace(ASCII_CAPITALS, (capitals) => capitals.toLowerCase())
    : address;
}
const ASCII_CAPITALS = /[A-Z]+/g;

/**
 * Whether IDNA2008's context rules allow the domain's zero-width joiners (CheckJoiners, as the
 * WHATWG URL parser applies them): a joiner after a virama, a non-joiner between joining letters.
 */
function joinersAllowed(domain: string): boolean {
  try {
    const url = new URL(`http://${domain}`);
    // All of it must be the host: past a '/', '?' or '#' (or what IDNA maps to one) a joiner
    // would sit in a path, query or fragment the IDNA checks never see.
    return url.pathname === "/" && url.search === "" && url.hash === "" && url.username === "";
  } catch {
    return false;
  }
}

/**
 * An internationalised domain as DNS reaches it (`bücher.de` is `xn--bcher-kva.de`), so that both
 * spellings count as one mailbox. Only a non-ASCII domain pays for the conversion.
 */
function asciiDomain(domain: string): string {
  if (PRINTABLE_ASCII.test(domain)) return domain;
  try {
    return new URL(`http://${domain}`).hostname.replace(/\.$/, "");
  } catch {
    return domain;
  }
}

/** Masks a recipient for answers and logs: `j***@example.com`, `+86*******00`. */
export function maskAddress(channel: Channel, address: string): string {
  if (channel === "email") {
    const at = address.lastIndexOf("@");
    return `${address.slice(0, Math.min(1, at))}***${address.slice(at)}`;
  }
  if (address.length <= 6) return "*".repeat(address.length);
  // keep the leading +country digits (up to 3) and the last two, as STYLE.md §7 asks
  return `${address.slice(0, 3)}${"*".repeat(address.length - 5)}${address.slice(-2)}`;
}

/** A recipient of either channel: an "@" makes it an email, anything else a phone number. */
export function parseAnyRecipient(
  input: string,
  options: { country?: string | undefined; defaultCountry: string; field?: string },
): Recipient {
  return parseRecipient(input.includes("@") ? "email" : "sms", input, options);
}

/** "+" + country calling code + the first `digits` national digits of an E.164 number. */
export function phonePrefix(e164: string, digits: number): string | undefined {
  const phone = parsePhoneNumberFromString(e164);
  if (!phone) return undefined;
  return e164.slice(0, 1 + phone.countryCallingCode.length + digits);
}
