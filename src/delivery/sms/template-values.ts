import type { RenderedMessage } from "../../core/ports.js";

/** What a vendor template variable is filled with. */
export type TemplateValue = "code" | "minutes";

/** DESIGN.md: a code is valid for 600 s in every dialect. */
export const DEFAULT_VALIDITY_MINUTES = 10;

/** Vendor SMS templates are approved in advance, so only the variables travel, never our text. */
export function templateValue(
  value: TemplateValue,
  message: RenderedMessage,
  validityMinutes: number,
): string {
  return value === "code" ? message.code : String(validityMinutes);
}
