/**
 * How an SMS text travels and what it costs: GSM 03.38 (7-bit) when every character is in the
 * default alphabet or its extension table, UCS-2 otherwise (one CJK character or emoji turns the
 * whole message into UCS-2, which holds 70 characters instead of 160). Carriers bill per segment.
 */

const GSM_BASIC =
  "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
// Each extension character costs two septets: the escape and the character.
const GSM_EXTENSION = "\f^{}\\[~]|€";

const BASIC = new Set(GSM_BASIC);
const EXTENSION = new Set(GSM_EXTENSION);

// One SMS holds 140 octets: 160 septets or 70 UCS-2 code units. A concatenation header (6 octets)
// leaves 153 septets or 67 code units per part.
const SINGLE_GSM_SEPTETS = 160;
const PART_GSM_SEPTETS = 153;
const SINGLE_UCS2_UNITS = 70;
const PART_UCS2_UNITS = 67;

export type SmsEncoding = "GSM-7" | "UCS-2";

export interface SmsCost {
  encoding: SmsEncoding;
  /** septets (GSM-7) or UTF-16 code units (UCS-2) */
  units: number;
  /** parts a handset receives and a carrier bills */
  segments: number;
}

/** The encoding and segment count of `text`, as an SMSC would split it. */
export function smsCost(text: string): SmsCost {
  const septets: number[] = [];
  for (const character of text) {
    if (BASIC.has(character)) septets.push(1);
    else if (EXTENSION.has(character)) septets.push(2);
    else return ucs2Cost(text);
  }
  const units = septets.reduce((sum, size) => sum + size, 0);
  // An escape and its character never straddle two parts, so count parts greedily by character.
  return {
    encoding: "GSM-7",
    units,
    segments: countParts(septets, units, SINGLE_GSM_SEPTETS, PART_GSM_SEPTETS),
  };
}

function ucs2Cost(text: string): SmsCost {
  // A surrogate pair (emoji, rare CJK) is two code units that must stay in one part.
  const sizes = Array.from(text, (character) => character.length);
  const units = text.length;
  return { encoding: "UCS-2", units, segments: countParts(sizes, units, SINGLE_UCS2_UNITS, PART_UCS2_UNITS) };
}

function countParts(sizes: number[], total: number, single: number, perPart: number): number {
  if (total === 0) return 1;
  if (total <= single) return 1;
  let parts = 1;
  let used = 0;
  for (const size of sizes) {
    if (used + size > perPart) {
      parts += 1;
      used = 0;
    }
    used += size;
  }
  return parts;
}
