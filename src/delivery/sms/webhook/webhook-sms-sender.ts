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

// The receiver is the operator's own gateway and should answer quickly; 10 s bounds a stuck one
// and leaves the outbox worker time to retry or fail over while the code is still valid.
const WEBHOOK_TIMEOUT_MS = 10_000;

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
 * message id, a body that claims JSON but does not parse is a transient failure); 4xx is the receiver refusing this message for good, except 408 and 429; anything
 * else is transient.
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
        options.timeoutMs ?? WEBHOOK_TIMEOUT_MS,
      );

      if (reply.status >= 200 && reply.status < 300) {
        // An empty or plain-text 2xx is a valid acceptance; a JSON answer cut short is not.
        if (reply.malformed) throw new SendFailure(`${id}: HTTP ${reply.status} with a malformed JSON body`);
        return isRecord(reply.body) && typeof reply.body.id === "string"
          ? { providerMessageId: reply.body.id }
          : {};
      }
      const permanent =
        reply.status >= 400 && reply.status < 500 && reply.status !== 408 && reply.status !== 429;
      throw new SendFailure(`${id}: HTTP ${reply.status}`, { permanent });
    },
  };
}
