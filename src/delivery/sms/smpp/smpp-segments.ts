import smpp from "smpp";

/** One submit_sm's worth of message. */
export interface SmppSegment {
  /** 0: SMSC default alphabet (GSM 03.38, one septet per byte); 8: UCS-2 big-endian */
  dataCoding: 0 | 8;
  /** UDH (when concatenated) followed by the text bytes; empty when the text travels as payload */
  shortMessage: Buffer;
  /** the whole text as a message_payload TLV, for SMSCs that take long messages that way */
  messagePayload?: Buffer;
  /** the short message starts with a user data header (esm_class UDHI) */
  hasUdh: boolean;
}

// The 140 octets of one SMS: 160 GSM septets (sent unpacked, one per byte) or 70 UCS-2 characters.
const SINGLE_GSM_SEPTETS = 160;
const SINGLE_UCS2_BYTES = 140;
// A concatenation header (6 octets) leaves 153 septets or 67 UCS-2 characters per part.
const PART_GSM_SEPTETS = 153;
const PART_UCS2_BYTES = 134;
const GSM_ESCAPE = 0x1b;

/**
 * Encodes `text` for SMPP and splits it when it exceeds one SMS: into parts carrying a
 * concatenation UDH (`reference` ties them together on the handset), or into one message_payload.
 */
export function segmentText(text: string, longMessages: "udh" | "payload", reference: number): SmppSegment[] {
  const gsm = smpp.encodings.ASCII.match(text);
  const dataCoding = gsm ? 0 : 8;
  const bytes = gsm ? smpp.encodings.ASCII.encode(text) : Buffer.from(text, "utf16le").swap16();

  if (bytes.length <= (gsm ? SINGLE_GSM_SEPTETS : SINGLE_UCS2_BYTES)) {
    return [{ dataCoding, shortMessage: bytes, hasUdh: false }];
  }
  if (longMessages === "payload") {
    return [{ dataCoding, shortMessage: Buffer.alloc(0), messagePayload: bytes, hasUdh: false }];
  }

  const chunks = gsm ? splitGsm(bytes) : splitUcs2(bytes);
  if (chunks.length > 255) throw new Error(`message needs ${chunks.length} parts; a UDH counts at most 255`);
  return chunks.map((chunk, index) => ({
    dataCoding,
    shortMessage: Buffer.concat([
      Buffer.from([0x05, 0x00, 0x03, reference & 0xff, chunks.length, index + 1]),
      chunk,
    ]),
    hasUdh: true,
  }));
}

/** Never splits an escape from the character it extends (`€`, `[`, …), or the handset shows garbage. */
function splitGsm(bytes: Buffer): Buffer[] {
  const chunks: Buffer[] = [];
  for (let start = 0; start < bytes.length; ) {
    let end = Math.min(start + PART_GSM_SEPTETS, bytes.length);
    if (end < bytes.length && bytes[end - 1] === GSM_ESCAPE) end -= 1;
    chunks.push(bytes.subarray(start, end));
    start = end;
  }
  return chunks;
}

/** Never splits a surrogate pair (emoji, rare CJK), or both halves arrive as replacement characters. */
function splitUcs2(bytes: Buffer): Buffer[] {
  const chunks: Buffer[] = [];
  for (let start = 0; start < bytes.length; ) {
    let end = Math.min(start + PART_UCS2_BYTES, bytes.length);
    const lastUnit = bytes.readUInt16BE(end - 2);
    if (end < bytes.length && lastUnit >= 0xd800 && lastUnit <= 0xdbff) end -= 2;
    chunks.push(bytes.subarray(start, end));
    start = end;
  }
  return chunks;
}
