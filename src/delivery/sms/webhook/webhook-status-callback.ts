import type {
  CallbackOutcome,
  CallbackRequest,
  DeliveryReceipt,
  StatusCallbackHandler,
} from "../../../core/delivery/delivery-receipts.js";
import { isRecord } from "../fetch-json.js";
import { verifyWebhookSignature, WEBHOOK_SIGNATURE_HEADER } from "./webhook-signature.js";

// A signed callback older than five minutes is a replay or a badly wrong clock; either way, refuse it.
const CALLBACK_TOLERANCE_SECONDS = 300;

const STATUSES = new Set<DeliveryReceipt["status"]>(["sent", "delivered", "failed"]);

export interface WebhookStatusCallbackOptions {
  provider: string;
  /** the webhook provider's shared secret: the gateway signs its callbacks as verifyd signs its sends */
  secret: string;
}

/**
 * Reads the generic webhook's status callbacks: JSON `{id, status, error?}` where `id` is the id the
 * gateway answered the send with (or, if it answered none, the verifyd message id it received),
 * `status` one of sent, delivered, failed; signed with `X-Verifyd-Signature` over the raw body.
 */
export function createWebhookStatusCallback(options: WebhookStatusCallbackOptions): StatusCallbackHandler {
  const header = WEBHOOK_SIGNATURE_HEADER.toLowerCase();
  return {
    provider: options.provider,
    handle(request: CallbackRequest): CallbackOutcome {
      const signature = request.headers[header];
      if (typeof signature !== "string" || signature === "") {
        return { kind: "unauthenticated", reason: `${WEBHOOK_SIGNATURE_HEADER} is missing` };
      }
      const nowSeconds = Math.floor(request.nowMs / 1000);
      if (
        !verifyWebhookSignature(
          options.secret,
          signature,
          request.rawBody,
          nowSeconds,
          CALLBACK_TOLERANCE_SECONDS,
        )
      ) {
        return {
          kind: "unauthenticated",
          reason: `${WEBHOOK_SIGNATURE_HEADER} does not match or is too old`,
        };
      }
      let body: unknown;
      try {
        body = JSON.parse(request.rawBody);
      } catch {
        return { kind: "invalid", reason: "the body is not JSON" };
      }
      if (!isRecord(body) || typeof body.id !== "string" || body.id === "" || body.id.length > 256) {
        return { kind: "invalid", reason: "id is required" };
      }
      const status = body.status;
      if (typeof status !== "string" || !STATUSES.has(status as DeliveryReceipt["status"])) {
        return { kind: "invalid", reason: "status must be sent, delivered or failed" };
      }
      const error = typeof body.error === "string" ? body.error.slice(0, 500) : undefined;
      return {
        kind: "receipts",
        receipts: [
          {
            provider: options.provider,
            providerMessageId: body.id,
            status: status as DeliveryReceipt["status"],
            ...(error ? { error } : {}),
          },
        ],
      };
    },
  };
}
