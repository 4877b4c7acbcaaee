import {
  type MessageSender,
  type RenderedMessage,
  SendFailure,
  type SendReceipt,
} from "../../../core/ports.js";
import { parseHttpUrl } from "../../provider-url.js";
import { fetchJson, isRecord } from "../fetch-json.js";

const TWILIO_BASE_URL = "https://api.twilio.com";

/**
 * Twilio error codes that describe the recipient itself, so no retry and no other route will help:
 * invalid or non-mobile numbers, numbers Twilio cannot reach, and recipients who replied STOP.
 * Account and sender problems (auth, geo permissions, unverified senders) stay transient: an
 * operator can fix them, and another provider may deliver meanwhile.
 */
const PERMANENT_ERROR_CODES = new Set([21211, 21214, 21217, 21401, 21407, 21421, 21610, 21612, 21614]);

type TwilioCredentials =
  | { authToken: string; apiKeySid?: never; apiKeySecret?: never }
  /** an API key, Twilio's recommended credential for production */
  | { apiKeySid: string; apiKeySecret: string; authToken?: never };

type TwilioSender =
  | { from: string; messagingServiceSid?: never }
  /** a Messaging Service picks the sender number itself */
  | { messagingServiceSid: string; from?: never };

export type TwilioSmsOptions = TwilioCredentials &
  TwilioSender & {
    accountSid: string;
    /** Twilio posts delivery status changes here */
    statusCallbackUrl?: string;
    /** provider id in delivery records (default "twilio") */
    id?: string;
    /** default https://api.twilio.com */
    baseUrl?: string;
    /** default PROVIDER_TIMEOUT_MS (fetch-json.ts) */
    timeoutMs?: number;
  };

/**
 * An SMS sender using Twilio's Messages API (`POST /2010-04-01/Accounts/{sid}/Messages.json`).
 * The returned provider message id is Twilio's message SID, which its status callbacks carry.
 */
export function createTwilioSmsSender(options: TwilioSmsOptions): MessageSender {
  const id = options.id ?? "twilio";
  const baseUrl = parseHttpUrl(options.baseUrl ?? TWILIO_BASE_URL).href.replace(/\/+$/, "");
  const url = `${baseUrl}/2010-04-01/Accounts/${encodeURIComponent(options.accountSid)}/Messages.json`;
  const [user, password] =
    options.apiKeySid !== undefined
      ? [options.apiKeySid, options.apiKeySecret]
      : [options.accountSid, options.authToken];
  const authorization = `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;

  return {
    id,
    channel: "sms",
    async send(message: RenderedMessage): Promise<SendReceipt> {
      const form = new URLSearchParams({ To: message.to, Body: message.text });
      if (options.messagingServiceSid !== undefined) {
        form.set("MessagingServiceSid", options.messagingServiceSid);
      } else {
        form.set("From", options.from);
      }
      if (options.statusCallbackUrl) form.set("StatusCallback", options.statusCallbackUrl);

      const { status, body } = await fetchJson(
        id,
        url,
        {
          method: "POST",
          headers: {
            authorization,
            accept: "application/json",
            "content-type": "application/x-www-form-urlencoded",
          },
          body: form.toString(),
        },
        options.timeoutMs,
      );

      if (status >= 200 && status < 300) {
        if (isRecord(body) && typeof body.sid === "string" && body.sid !== "") {
          return { providerMessageId: body.sid };
        }
        // A 2xx says Twilio took the message, whatever its body lacks: it may go out.
        throw new SendFailure(`${id}: HTTP ${status} without a message sid`, { unconfirmed: true });
      }
      const code = isRecord(body) && typeof body.code === "number" ? body.code : undefined;
      const detail = isRecord(body) && typeof body.message === "string" ? `: ${body.message}` : "";
      throw new SendFailure(`${id}: HTTP ${status}${code === undefined ? "" : ` error ${code}`}${detail}`, {
        permanent: status < 500 && code !== undefined && PERMANENT_ERROR_CODES.has(code),
      });
    },
  };
}
