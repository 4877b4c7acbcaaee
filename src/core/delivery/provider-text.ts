// Receipts look deliveries up by the provider's message id through an index; real ids are tens of
// characters (Twilio 34, SMPP at most 64), so this bound only ever cuts a broken or hostile answer.
export const MAX_PROVIDER_MESSAGE_ID_CHARS = 255;
// Room for any provider's explanation; a whole HTML error page is not worth keeping on every try.
export const MAX_PROVIDER_ERROR_CHARS = 1_000;

/**
 * A string a provider chose (its message id, its error text), made fit for a delivery record: no
 * NUL, which PostgreSQL text cannot hold (one would fail the whole batch of records written with
 * it), no lone surrogate, and at most `maxChars` long. The same function applies where a receipt
 * names an id, so a shortened id still finds its delivery.
 */
export function storableProviderText(text: string, maxChars: number): string {
  const clean = text.replaceAll("\u0000", "").toWellFormed();
  if (clean.length <= maxChars) return clean;
  // Never cut a surrogate pair in half.
  const cut = clean.slice(0, maxChars);
  return /[\uD800-\uDBFF]$/.test(cut) ? cut.slice(0, -1) : cut;
}

/** A provider's message id as delivery records and receipt lookups hold it. */
export const storableMessageId = (id: string) => storableProviderText(id, MAX_PROVIDER_MESSAGE_ID_CHARS);

/** A failure's text as a delivery record holds it. */
export const storableError = (error: string) => storableProviderText(error, MAX_PROVIDER_ERROR_CHARS);
