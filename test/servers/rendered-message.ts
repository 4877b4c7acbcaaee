import type { RenderedMessage } from "../../src/core/ports.js";

/** A message as the outbox worker would hand it to a sender; override what a test is about. */
export function renderedMessage(overrides: Partial<RenderedMessage> = {}): RenderedMessage {
  return {
    messageId: "msg_01HZX3T9Q8P7RY3V2W1K0M9N8B",
    appId: "default",
    verificationId: "ver_01HZX3T9Q8P7RY3V2W1K0M9N8C",
    channel: "sms",
    to: "+8613800138000",
    purpose: "sign_in",
    locale: "en",
    subject: "Your sign-in code",
    text: "Your verification code is 042917. It expires in 10 minutes.",
    code: "042917",
    ...overrides,
  };
}
