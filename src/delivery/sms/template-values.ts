import type { RenderedMessage } from "../../core/ports.js";

/** What a vendor template variable is filled with. */
export type TemplateValue = "code" | "minutes";

// For a message rendered without its minutes (every render sets them): DESIGN.md's 600 s code.
const DEFAULT_VALIDITY_MINUTES = 10;

/**
 * Vendor SMS templates are approved in advance, so only the variables travel, never our text.
 * "minutes" is what the provider's `validityMinutes` fixes if set, else what our own text would
 * state: the whole minutes the code has left (a policy's TTL other than 10 minutes, a message sent
 * late), as a constant 10 would misstate.
 */
export function templateValue(
  value: TemplateValue,
  message: RenderedMessage,
  validityMinutes: number | undefined,
): string {
  if (value === "code") return message.code;
  return String(validityMinutes ?? message.minutes ?? DEFAULT_VALIDITY_MINUTES);
}
