// Control characters (C0, DEL, C1) are invisible in a file and harmful where the text goes: CR/LF
// in a mail header, ESC on a terminal, NUL in PostgreSQL (which refuses to store it).
export const SINGLE_LINE = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$";

const SINGLE_LINE_TEXT = new RegExp(SINGLE_LINE);

/** What a refused From (or Reply-To) is told, after the value. */
export const EMAIL_FROM_SHAPE =
  "is not an email address: write codes@example.com or Name <codes@example.com>";

/**
 * A From a mail relay takes: `address` or `Name <address>` (the name may be quoted), the address
 * with one `@` and a dotted domain. Control characters are refused: a CR/LF would end the header.
 */
export function isEmailFrom(value: string): boolean {
  if (!SINGLE_LINE_TEXT.test(value)) return false;
  const named = /^(.*)<([^<>]*)>$/s.exec(value.trim());
  if (named && /[<>]/.test(named[1] as string)) return false;
  const address = named ? (named[2] as string) : value.trim();
  return /^[^\s@<>]+@[^\s@<>.]+(\.[^\s@<>.]+)+$/.test(address);
}
