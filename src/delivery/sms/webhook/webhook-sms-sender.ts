import {
  type MessageSender,
  type RenderedMessage,
  SendFailure,
  type SendReceipt,
} from "../../../core/ports.js";
import type { Channel } from "../../../core/types.js";
import { parseHttpUrl } from "../../provider-url.js";
import { fetchJson, isRecord } from "../fetch-json.js";
import { signWebhookPayload, WEBHOOK_SIGNATURE_HEADER } from "./webhook-signature.js";

/**
 * The answers that refuse the recipient or this message itself (a malformed number, a number
 * gone or blocked), so no retry and no other provider helps. Every other 4xx is about verifyd's
 * request to this gateway rather than the recipient: 401/403 (the secret or signature refused),
 * 404/405 (a wrong url), 409 (a duplicate still in progress under the same Idempotency-Key),
 * 413/415/431 (a request it will not read), 408/425/429 (come back later), and any the gateway
 * made up. Those stay transient, so the message fails over and the breaker counts the failure:
 * taken as the recipient's fault, one misconfigured gateway fails every message at once without
 * trying the next provider, whereas a recipient refusal misread as transient costs a few retries
 * before the code expires.
 */
const RECIPIENT_REFUSALS = new Set([400, 410, 422]);

/** What the operator should look at when the gateway refuses verifyd's request rather than the recipient. */
const REQUEST_REFUSAL_HINTS: Record<number, string> = {
  401: "the gateway refused verifyd's credentials: check the provider's secret",
  403: "the gateway refused verifyd's credentials: check the provider's secret",
  404: "the gateway has no such endpoint: check the provider's url",
  405: "the gateway has no such endpoint: check the provider's url",
};

export interface WebhookSmsOptions {
  /** where each message is POSTed */
  url: string;
  /** shared secret for the `X-Verifyd-Signature` HMAC */
  secret: string;
  /** which channel this webhook delivers (default "sms") */
  channel?: Channel;
  /** provider id in delivery records (default "webhook") */
  id?: string;
  timeoutMs?: number;
}

/**
 * A sender that hands each message to an HTTP endpoint of the operator's choosing, as JSON
 * `{id, to, text, channel, app, purpose, locale}`, signed (`X-Verifyd-Signature`, see
 * `verifyWebhookSignature`) and carrying `Idempotency-Key: <message id>` so a receiver can drop
 * the duplicates that retries produce. 2xx is success (`id` in a JSON answer becomes the provider
 * message id, a body that claims JSON but does not parse leaves the send unconfirmed); 400, 410 and
 * 422 refuse this message for good (see RECIPIENT_REFUSALS); anything else is transient, and a
 * refused signature or a wrong url says so in the failure.
 */
export function createWebhookSmsSender(options: WebhookSmsOptions): MessageSender {
  const id = options.id ?? "webhook";
  const channel = options.channel ?? "sms";
  const url = parseHttpUrl(options.url).href;

  return {
    id,
    channel,
    async send(message: RenderedMessage): Promise<SendReceipt> {
      const body = JSON.stringify({
        id: message.messageId,
        to: message.to,
        text: message.text,
        channel: message.channel,
        app: message.appId,
        purpose: message.purpose,
        locale: message.locale,
      });
      const signature = signWebhookPayload(options.secret, Math.floor(Date.now() / 1000), body);

      const reply = await fetchJson(
        id,
        url,
        {
          method: "POST",
          headers: {
            "content-type": "application/json",
            [WEBHOOK_SIGNATURE_HEADER]: signature,
            "Idempotency-Key": message.messageId,
          },
          body,
        },
        options.timeoutMs,
      );

      if (reply.status >= 200 && reply.status < 300) {
        // An empty or plain-text 2xx is a valid acceptance (a JSON answer cut short is unconfirmed).
        return isRecord(reply.body) && typeof reply.body.id === "string"
          ? { providerMessageId: reply.body.id }
          : {};
      }
      const hint = REQUEST_REFUSAL_HINTS[reply.status];
      throw new SendFailure(`${id}: HTTP ${reply.status}${hint ? ` (${hint})` : ""}`, {
        permanent: RECIPIENT_REFUSALS.has(reply.status),
      });
    },
  };
}
