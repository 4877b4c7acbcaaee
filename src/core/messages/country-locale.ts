import type { Purpose, TemplateSet } from "../types.js";
import { matchLocale } from "./templates.js";

// The language most people in a region read their SMS in. Regions where several languages are
// common (BE, CH, SG, …) are left out: a wrong guess is worse than the app's default.
const LANGUAGE_BY_REGION: Record<string, string> = {
  CN: "zh-Hans",
  TW: "zh-Hant",
  HK: "zh-Hant",
  MO: "zh-Hant",
  US: "en",
  GB: "en",
  AU: "en",
  NZ: "en",
  IE: "en",
  JP: "ja",
  KR: "ko",
  DE: "de",
  AT: "de",
  FR: "fr",
  ES: "es",
  MX: "es",
  AR: "es",
  CO: "es",
  CL: "es",
  PE: "es",
  BR: "pt",
  PT: "pt",
  IT: "it",
  RU: "ru",
  NL: "nl",
  PL: "pl",
  TR: "tr",
  VN: "vi",
  TH: "th",
  ID: "id",
  UA: "uk",
  SE: "sv",
  DK: "da",
  FI: "fi",
  NO: "nb",
  CZ: "cs",
  GR: "el",
  IL: "he",
  HU: "hu",
  RO: "ro",
};

/**
 * The locale a phone number's region suggests (+86 -> zh-Hans), if the app or verifyd has a
 * template of `purpose` in that language; undefined otherwise, so the caller falls back to the
 * app default. Traditional Chinese (TW, HK, MO) does not fall back to Simplified as a client's
 * explicit request does: a guess from the number is no reason to send a language nobody asked for.
 */
export function countryLocale(
  region: string | undefined,
  templates: TemplateSet,
  purpose: Purpose,
): string | undefined {
  const language = region === undefined ? undefined : LANGUAGE_BY_REGION[region];
  if (language === undefined) return undefined;
  return matchLocale(language, templates, purpose);
}
