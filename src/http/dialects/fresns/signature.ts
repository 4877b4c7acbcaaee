import { createHash } from "node:crypto";
import { equalInConstantTime } from "../../../core/secrets.js";

/** The headers that take part in a Fresns signature (Fresns `SignHelper`, docs `api/headers.md`). */
export const SIGNED_HEADERS = [
  "X-Fresns-App-Id",
  "X-Fresns-Client-Platform-Id",
  "X-Fresns-Client-Version",
  "X-Fresns-Aid",
  "X-Fresns-Aid-Token",
  "X-Fresns-Uid",
  "X-Fresns-Uid-Token",
  "X-Fresns-Signature-Timestamp",
] as const;

export type SignedHeaderName = (typeof SIGNED_HEADERS)[number];

/** Fresns accepts a signature made up to 600 s before or after its own clock. */
export const SIGNATURE_SKEW_SECONDS = 600;

/** PHP `urlencode`, which `http_build_query` applies: only A-Z a-z 0-9 - _ . stay, a space is "+". */
function phpUrlencode(value: string): string {
  return encodeURIComponent(value)
    .replace(/[!'()*~]/g, (char) => `%${char.charCodeAt(0).toString(16).toUpperCase()}`)
    .replaceAll("%20", "+");
}

/**
 * The Fresns signature of a request: `md5(http_build_query(ksort(non-empty signed headers)) .
 * "&AppSecret=" . secret)`, lower-case hex. md5 is Fresns's choice, kept for wire compatibility;
 * it costs about a microsecond per request.
 */
export function fresnsSignature(
  headers: Partial<Record<SignedHeaderName, string | number>>,
  secret: string,
): string {
  const query = SIGNED_HEADERS.filter((name) => {
    const value = headers[name];
    return value !== undefined && value !== "";
  })
    .sort()
    .map((name) => `${phpUrlencode(name)}=${phpUrlencode(String(headers[name]))}`)
    .join("&");
  return createHash("md5").update(`${query}&AppSecret=${secret}`, "utf8").digest("hex");
}

/** Constant-time comparison of a presented signature with the expected one. */
export function signatureMatches(presented: string, expected: string): boolean {
  return equalInConstantTime(presented.toLowerCase(), expected);
}

/**
 * Whether a signature timestamp lies within the allowed skew of `nowMs`: 10 digits are seconds,
 * 13 are milliseconds (Fresns accepts 10–13 digits and reads 13 as milliseconds).
 */
export function timestampFresh(timestamp: string, nowMs: number): boolean {
  const value = Number(timestamp);
  const atMs = timestamp.length === 13 ? value : value * 1000;
  return Math.abs(nowMs - atMs) <= SIGNATURE_SKEW_SECONDS * 1000;
}
