import type { Clock, DevInbox, Logger, MessageSender } from "../../core/ports.js";
import type { Channel } from "../../core/types.js";

export interface DevSenderOptions {
  channel: Channel;
  inbox: DevInbox;
  logger: Logger;
  clock: Clock;
}

/**
 * Delivers into the dev inbox (`GET /v1/dev/inbox`) instead of a real provider, and logs the code:
 * dev mode only, DESIGN.md's one exception besides the inbox (production mode has no dev sender,
 * and its logger redacts `code` whatever logs it).
 */
export function createDevSender(options: DevSenderOptions): MessageSender {
  const { channel, inbox, logger } = options;
  return {
    id: "dev",
    channel,
    async send(message) {
      await inbox.add({
        id: message.messageId,
        appId: message.appId,
        channel: message.channel,
        to: message.to,
        subject: message.subject,
        text: message.text,
        code: message.code,
        createdAtMs: options.clock.nowMs(),
      });
      logger.info(
        { channel: message.channel, to: message.to, code: message.code },
        "dev sender: code delivered to the dev inbox",
      );
      return { providerMessageId: message.messageId };
    },
  };
}
