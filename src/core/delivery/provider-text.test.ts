import { describe, expect, it } from "vitest";
import {
  MAX_PROVIDER_ERROR_CHARS,
  MAX_PROVIDER_MESSAGE_ID_CHARS,
  storableError,
  storableMessageId,
} from "./provider-text.js";

describe("storable provider text", () => {
  it("drops NUL characters, which PostgreSQL text cannot hold", () => {
    expect(storableMessageId("gw-\u0000-odd\u0000")).toBe("gw--odd");
    expect(storableError("HTTP 500: \u0000boom")).toBe("HTTP 500: boom");
  });

  it("bounds ids and errors without splitting a character", () => {
    expect(storableMessageId("x".repeat(10_000))).toHaveLength(MAX_PROVIDER_MESSAGE_ID_CHARS);
    expect(storableError("e".repeat(10_000))).toHaveLength(MAX_PROVIDER_ERROR_CHARS);
    const emoji = `${"x".repeat(MAX_PROVIDER_MESSAGE_ID_CHARS - 1)}😀`;
    expect(storableMessageId(emoji)).toBe("x".repeat(MAX_PROVIDER_MESSAGE_ID_CHARS - 1));
  });

  it("replaces a lone surrogate, so the stored id is the one receipts look up", () => {
    expect(storableMessageId("id-\uD800")).toBe("id-\uFFFD");
  });

  it("keeps an ordinary id as it is", () => {
    expect(storableMessageId("SM0123456789abcdef")).toBe("SM0123456789abcdef");
  });
});
