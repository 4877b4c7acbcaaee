import type { MessageSender, RenderedMessage, SendReceipt } from "../../src/core/ports.js";
import { SendFailure } from "../../src/core/ports.js";
import type { Channel } from "../../src/core/types.js";

/** A MessageSender that keeps what it was given; can be told to fail, to test retries. */
export class RecordingSender implements MessageSender {
  readonly messages: RenderedMessage[] = [];
  /** the next `failures` sends fail (transiently unless `permanent` or `unconfirmed`) */
  failures = 0;
  permanent = false;
  unconfirmed = false;

  constructor(
    readonly channel: Channel,
    readonly id = `recording-${channel}`,
  ) {}

  async send(message: RenderedMessage): Promise<SendReceipt> {
    if (this.failures > 0) {
      this.failures -= 1;
      throw new SendFailure("recording sender told to fail", {
        permanent: this.permanent,
        unconfirmed: this.unconfirmed,
      });
    }
    this.messages.push(message);
    return { providerMessageId: `rec-${this.messages.length}` };
  }

  /** The code of the latest message to `to`. */
  lastCodeFor(to: string): string | undefined {
    return this.messages.findLast((message) => message.to === to)?.code;
  }
}
