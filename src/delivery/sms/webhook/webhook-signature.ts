import { createHmac, timingSafeEqual } from "node:crypto";

/** The header a webhook request carries: `t=<unix seconds>,v1=<hex HMAC-SHA256>`. */
export const WEBHOOK_SIGNATURE_HEADER = "X-Verifyd-Signature";

/** Signs `"<t>.<raw body>"`, binding the timestamp to the body so neither can be replayed alone. */
export function signWebhookPayload(secret: string, timestampSeconds: number, rawBody: string): string {
  const v1 = createHmac("sha256", secret).update(`${timestampSeconds}.${rawBody}`).digest("hex");
  return `t=${timestampSeconds},v1=${v1}`;
}

/**
 * For receivers: true when `header` (the `X-Verifyd-Signature` value) signs `rawBody` with
 * `secret` and its timestamp lies within `toleranceSeconds` of `nowSeconds`. Pass the body bytes
 * exactly as received, before any JSON parsing. Several `v1=` entries are accepted (any may match),
 * so a sender can sign with an old and a new secret while they rotate.
 */
export function verifyWebhookSignature(
  secret: string,
  header: string,
  rawBody: string | Buffer,
  nowSeconds: number,
  toleranceSeconds: number,
): boolean {
  let timestamp: number | undefined;
  const candidates: string[] = [];
  for (const part of header.split(",")) {
    const [key, value] = part.trim().split("=", 2);
    if (key === "t" && value && /^\d+$/.test(value)) timestamp = Number(value);
    if (key === "v1" && value && /^[0-9a-f]{64}$/.test(value)) candidates.push(value);
  }
  if (timestamp === undefined || Math.abs(nowSeconds - timestamp) > toleranceSeconds) return false;

  const body = typeof rawBody === "string" ? rawBody : rawBody.toString("utf8");
  const expected = createHmac("sha256", secret).update(`${timestamp}.${body}`).digest();
  // Constant-time comparison, so response timing reveals nothing about the expected signature.
  return candidates.some((candidate) => timingSafeEqual(Buffer.from(candidate, "hex"), expected));
}
