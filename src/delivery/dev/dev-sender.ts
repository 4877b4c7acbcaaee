import type { Clock, DevInbox, Logger, MessageSender } from "../../core/ports.js";
import type { Channel } from "../../core/types.js";

export interface DevSenderOptions {
  channel: Channel;
  inbox: DevInbox;
  logger: Logger;
  /** print the code in the log line (dev mode only; DESIGN.md's one exception besides the inbox) */
  logCodes: boolean;
  clock: Clock;
}

/** Delivers into the dev inbox (`GET /v1/dev/inbox`) instead of a real provider. */
export function createDevSender(options: DevSenderOptions): MessageSender {
  const { channel, inbox, logger, logCodes } = options;
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
      if (logCodes) {
        logger.info(
          { channel: message.channel, to: message.to, code: message.code },
          "dev sender: code delivered to the dev inbox",
        );
      }
      return { providerMessageId: message.messageId };
    },
  };
}
