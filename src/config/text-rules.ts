// Control characters (C0, DEL, C1) are invisible in a file and harmful where the text goes: CR/LF
// in a mail header, ESC on a terminal, NUL in PostgreSQL (which refuses to store it).
export const SINGLE_LINE = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$";

// A message body may run over lines (SMS adds its own with the warning and WebOTP lines), in a
// file written on any system (CR LF), and hold tabs; no other control character.
export const MULTI_LINE = "^[^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\u007F-\\u009F]*$";

const SINGLE_LINE_TEXT = new RegExp(SINGLE_LINE);

/** What a refused From (or Reply-To) is told, after the value. */
export const EMAIL_FROM_SHAPE =
  "is not an email address: write codes@example.com or Name <codes@example.com>";

/**
 * A From a mail relay takes: `address`, `Name <address>` (the name may be quoted, and hold angle
 * brackets inside its quotes) or `address (comment)`, the address with one `@` and a domain (a
 * single label too: `codes@localhost`, a dev mail catcher's). Control characters are refused: a
 * CR/LF would end the header and start another.
 */
export function isEmailFrom(value: string): boolean {
  if (!SINGLE_LINE_TEXT.test(value)) return false;
  let text = value.trim().replace(TRAILING_COMMENT, "");
  if (text.endsWith(">")) {
    const open = text.lastIndexOf("<");
    if (open < 0) return false;
    text = text.slice(open + 1, -1);
  }
  return ADDRESS.test(text);
}

/** A Reply-To, which may name several addresses: each of a comma list is one isEmailFrom takes. */
export function isEmailList(value: string): boolean {
  const entries = value.match(LIST_ENTRY) ?? [];
  return entries.length > 0 && entries.join(",") === value && entries.every((entry) => isEmailFrom(entry));
}

const TRAILING_COMMENT = /\s*\([^()]*\)$/;
const ADDRESS = /^[^\s@<>()",]+@[^\s@<>()",.]+(\.[^\s@<>()",.]+)*$/;
// An entry runs to the next comma outside double quotes.
const LIST_ENTRY = /(?:"[^"]*"|[^,"])+/g;
