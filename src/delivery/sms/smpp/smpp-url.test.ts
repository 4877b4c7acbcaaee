import { describe, expect, it } from "vitest";
import { ProviderUrlError } from "../../provider-url.js";
import { parseSmppUrl } from "./smpp-url.js";

describe("parseSmppUrl", () => {
  it("reads host and port, 2775 plain and 3550 over TLS by default", () => {
    expect(parseSmppUrl("smpp://smsc.example:2776")).toEqual({
      host: "smsc.example",
      port: 2776,
      tls: false,
    });
    expect(parseSmppUrl("smpp://smsc.example")).toEqual({ host: "smsc.example", port: 2775, tls: false });
    expect(parseSmppUrl("ssmpp://smsc.example")).toEqual({ host: "smsc.example", port: 3550, tls: true });
  });

  it.each([
    ["smpp://smsc.example:99999", "the port must be 1-65535"],
    ["smpp://smsc.example:0", "the port must be 1-65535"],
    ["ssmpp://", "it has no host"],
    [
      "smpp://acme:pa#ss@smsc.example:2775",
      "a '%', '#', '?' or '/' in the user or password must be percent-encoded (%25, %23, %3F, %2F)",
    ],
    ["smtp://smsc.example", "it must start with smpp:// or ssmpp://"],
  ])("refuses %s, saying why without repeating it", (url, reason) => {
    expect(() => parseSmppUrl(url)).toThrow(new ProviderUrlError("SMPP", reason));
    try {
      parseSmppUrl(url);
    } catch (error) {
      expect((error as Error).message).not.toContain("smsc");
    }
  });
});
