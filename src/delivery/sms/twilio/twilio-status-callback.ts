import { createHmac } from "node:crypto";
import type {
  CallbackOutcome,
  CallbackRequest,
  DeliveryReceipt,
  StatusCallbackHandler,
} from "../../../core/delivery/delivery-receipts.js";
import { equalInConstantTime } from "../../../core/secrets.js";

export const TWILIO_SIGNATURE_HEADER = "x-twilio-signature";

/**
 * Twilio's request signature: base64 HMAC-SHA1, keyed by the auth token, over the full URL followed
 * by every POST parameter name and value, names sorted (a repeated name's values sorted too).
 */
export function twilioSignature(authToken: string, url: string, params: URLSearchParams): string {
  let data = url;
  for (const name of [...new Set(params.keys())].sort()) {
    for (const value of [...new Set(params.getAll(name))].sort()) data += name + value;
  }
  return createHmac("sha1", authToken).update(data, "utf8").digest("base64");
}

/**
 * True when `signature` signs the request for `url` as Twilio called it. Like Twilio's own
 * `validateRequest`, the URL is tried with and without its default port, because proxies and
 * Twilio disagree on whether `:443` is part of it.
 */
export function verifyTwilioSignature(
  authToken: string,
  signature: string,
  url: string,
  params: URLSearchParams,
): boolean {
  // Constant time, so the answer's timing reveals nothing about the expected signature.
  return urlVariants(url).some((candidate) =>
    equalInConstantTime(twilioSignature(authToken, candidate, params), signature),
  );
}

function urlVariants(url: string): string[] {
  const match = /^(https?:\/\/)([^/?#]*@)?(\[[^\]]*\]|[^/?#:]*)(:\d+)?(.*)$/i.exec(url);
  if (!match) return [url];
  const [, scheme = "", userInfo = "", host = "", port, rest = ""] = match;
  const defaultPort = scheme.toLowerCase() === "https://" ? ":443" : ":80";
  return [
    url,
    `${scheme}${userInfo}${host}${rest}`,
    `${scheme}${userInfo}${host}${port ?? defaultPort}${rest}`,
  ];
}

// Twilio's final message states; queued, sending, accepted, scheduled and sent are on the way.
const FINAL_STATUSES: Record<string, DeliveryReceipt["status"]> = {
  delivered: "delivered",
  read: "delivered",
  undelivered: "failed",
  failed: "failed",
  canceled: "failed",
};

export interface TwilioStatusCallbackOptions {
  /** the provider id (the `{provider}` of the callback URL) */
  provider: string;
  /** Twilio signs webhooks with the account's auth token, even when sends use an API key */
  authToken: string;
  /** the URL configured as StatusCallback; Twilio signed exactly this string */
  statusCallbackUrl?: string;
}

/**
 * Reads Twilio's message status callbacks (form-encoded `MessageSid`, `MessageStatus`,
 * `ErrorCode`). The signature is checked before any field is read.
 */
export function createTwilioStatusCallback(options: TwilioStatusCallbackOptions): StatusCallbackHandler {
  return {
    provider: options.provider,
    handle(request: CallbackRequest): CallbackOutcome {
      const header = request.headers[TWILIO_SIGNATURE_HEADER];
      if (typeof header !== "string" || header === "") {
        return { kind: "unauthenticated", reason: "X-Twilio-Signature is missing" };
      }
      const params = new URLSearchParams(request.rawBody);
      const url = options.statusCallbackUrl ?? request.url;
      // A configured URL may end in Twilio's connection overrides (`#rc=3`), which no request
      // carries: whether Twilio signs the URL with them is not documented, so both are accepted.
      const signedUrls = url.includes("#") ? [url, url.slice(0, url.indexOf("#"))] : [url];
      if (!signedUrls.some((signed) => verifyTwilioSignature(options.authToken, header, signed, params))) {
        return { kind: "unauthenticated", reason: "X-Twilio-Signature does not match" };
      }
      const sid = params.get("MessageSid") ?? params.get("SmsSid");
      const status = params.get("MessageStatus") ?? params.get("SmsStatus");
      if (!sid || !status) return { kind: "invalid", reason: "MessageSid and MessageStatus are required" };
      const final = FINAL_STATUSES[status];
      if (final === undefined) return { kind: "receipts", receipts: [] };
      const errorCode = params.get("ErrorCode");
      return {
        kind: "receipts",
        receipts: [
          {
            provider: options.provider,
            providerMessageId: sid,
            status: final,
            ...(final === "failed" ? { error: `${status}${errorCode ? ` error ${errorCode}` : ""}` } : {}),
          },
        ],
      };
    },
  };
}
