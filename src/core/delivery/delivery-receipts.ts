import type { Clock, Logger, OutboxStore } from "../ports.js";
import { withoutContacts } from "./contact-mask.js";
import { storableError, storableMessageId } from "./provider-text.js";

/** A provider's word on a message it accepted earlier (SMPP deliver_sm, a status callback). */
export interface DeliveryReceipt {
  provider: string;
  /** the id the provider gave the message when it accepted it */
  providerMessageId: string;
  status: "sent" | "delivered" | "failed";
  error?: string;
}

/** A status callback as it reached `POST /v1/callbacks/{provider}`, before anything trusts it. */
export interface CallbackRequest {
  /** the absolute URL the provider called, as it would have signed it */
  url: string;
  headers: Readonly<Record<string, string | string[] | undefined>>;
  /** the body exactly as received: signatures cover these bytes */
  rawBody: string;
  nowMs: number;
}

export type CallbackOutcome =
  /** signature missing or wrong: nothing in the request may be believed */
  | { kind: "unauthenticated"; reason: string }
  /** signed, but not something we understand (no message id, a malformed body) */
  | { kind: "invalid"; reason: string }
  /** signed and read; an intermediate status yields no receipt */
  | { kind: "receipts"; receipts: DeliveryReceipt[] };

/** Reads one provider's status callbacks: verifies the signature first, then the body. */
export interface StatusCallbackHandler {
  readonly provider: string;
  handle(request: CallbackRequest): CallbackOutcome;
}

export interface ReceiptRecorderOptions {
  outbox: OutboxStore;
  clock: Clock;
  logger: Logger;
  /** waits before looking again for a delivery a receipt names but the store does not hold yet */
  retryDelaysMs?: number[];
}

export interface ReceiptRecorder {
  /** Applies a receipt; resolves true once it matched a delivery (possibly after retries). */
  record(receipt: DeliveryReceipt): Promise<boolean>;
  /** cancels pending retries (shutdown) */
  close(): void;
}

// An SMSC can send deliver_sm within milliseconds of submit_sm_resp, before the worker's markSent
// (which records the provider message id) has committed; looking again shortly after catches
// that race. Beyond a few seconds an unmatched receipt names a message we never sent.
const RECEIPT_RETRY_DELAYS_MS = [100, 500, 2_000, 5_000];

/**
 * Writes receipts to the outbox's delivery records (`OutboxStore.recordReceipt`), retrying a few
 * times when the delivery is not recorded yet. Never throws: a receipt is information, and losing
 * one must not take down the SMPP session or the callback route that carried it.
 */
export function createReceiptRecorder(options: ReceiptRecorderOptions): ReceiptRecorder {
  const { outbox, clock, logger } = options;
  const delays = options.retryDelaysMs ?? RECEIPT_RETRY_DELAYS_MS;
  const waits = new Map<NodeJS.Timeout, () => void>();
  let closed = false;

  const wait = (ms: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        waits.delete(timer);
        resolve();
      }, ms);
      timer.unref();
      waits.set(timer, resolve);
    });

  return {
    async record(receipt) {
      for (let attempt = 0; ; attempt++) {
        try {
          // Cleaned as the worker cleaned the id it recorded, so the two still match.
          const matched = await outbox.recordReceipt(
            receipt.provider,
            storableMessageId(receipt.providerMessageId),
            {
              provider: receipt.provider,
              status: receipt.status,
              atMs: clock.nowMs(),
              // The receipt names no recipient or code to look for: every contact-like run goes.
              ...(receipt.error ? { error: storableError(withoutContacts(receipt.error)) } : {}),
            },
          );
          if (matched) {
            logger.info(
              {
                provider: receipt.provider,
                providerMessageId: receipt.providerMessageId,
                status: receipt.status,
              },
              "delivery receipt",
            );
            return true;
          }
        } catch (error) {
          logger.warn({ provider: receipt.provider, err: error }, "delivery receipt not recorded");
        }
        const delay = delays[attempt];
        if (delay === undefined || closed) break;
        await wait(delay);
        if (closed) return false;
      }
      logger.warn(
        { provider: receipt.provider, providerMessageId: receipt.providerMessageId },
        "delivery receipt for an unknown message",
      );
      return false;
    },
    close() {
      closed = true;
      // Settle the waits so pending `record` calls finish (unmatched) instead of hanging.
      for (const [timer, resolve] of waits) {
        clearTimeout(timer);
        resolve();
      }
      waits.clear();
    },
  };
}
