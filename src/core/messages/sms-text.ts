import type { SmsSettings } from "../types.js";
import { localeKey } from "./templates.js";

// Phishers ask victims to read the code back; saying "do not share it" in the message itself is
// what the major verification services do. Keyed by language family; others read English.
const WARNINGS: Record<string, string> = {
  en: "Do not share this code with anyone.",
  "zh-Hans": "请勿将验证码告知他人。",
  "zh-Hant": "請勿將驗證碼告知他人。",
};

function warningFor(locale: string): string {
  // Chinese by the script the templates' own rules read (an explicit script wins over a region:
  // zh-Hans-HK is Simplified), so the warning is in the script of the text above it.
  const { family } = localeKey(locale);
  if (family === "zh-hant") return WARNINGS["zh-Hant"]!;
  if (family === "zh-hans") return WARNINGS["zh-Hans"]!;
  return WARNINGS[locale] ?? WARNINGS.en!;
}

/**
 * An SMS body from its template text and the app's SMS settings: the optional warning line, then
 * the optional WebOTP line. WebOTP (https://wicg.github.io/web-otp/) requires `@domain #code` to be
 * the last line, so nothing may follow it.
 */
export function composeSmsText(text: string, code: string, locale: string, settings: SmsSettings): string {
  let body = text;
  if (settings.warning) body += `\n${warningFor(locale)}`;
  if (settings.webOtpDomain) body += `\n\n@${settings.webOtpDomain} #${code}`;
  return body;
}
