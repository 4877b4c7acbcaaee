import type { MessageSender, RenderedMessage, SendReceipt } from "../ports.js";

/**
 * Called by a queueing sender as a message leaves its queue for the provider. The caller starts
 * the try's clock there, or answers false when the message may no longer be sent (the outbox
 * worker: its claim would lapse before the try could end); the sender then drops it unsent and
 * fails the send.
 */
export type HandOver = () => boolean;

/**
 * A sender that holds messages in a queue of its own until one of its few connections is free
 * (an SMTP pool). Time spent there is not the provider being slow, and a message its caller gave
 * up on there must never go out later: so the caller times the provider from the hand-over, and
 * may still withdraw the message at that moment.
 *
 * An extension of the MessageSender port kept beside the worker, its one caller; it belongs in
 * ports.ts as an optional second argument of `send`.
 */
export interface QueueingSender extends MessageSender {
  readonly queuesMessages: true;
  send(message: RenderedMessage, handOver?: HandOver): Promise<SendReceipt>;
}

export function isQueueingSender(sender: MessageSender): sender is QueueingSender {
  return (sender as Partial<QueueingSender>).queuesMessages === true;
}
