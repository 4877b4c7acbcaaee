import { describe, expect, it } from "vitest";
import { ProviderUrlError, parseHttpUrl } from "./provider-url.js";

describe("parseHttpUrl", () => {
  it("reads a vendor's base URL or a webhook, an '@' in its path or query included", () => {
    expect(parseHttpUrl("https://sms.tencentcloudapi.com").href).toBe("https://sms.tencentcloudapi.com/");
    expect(parseHttpUrl("http://127.0.0.1:8080/base").port).toBe("8080");
    expect(parseHttpUrl("https://gw.example/send?notify=ops@acme.example").search).toBe(
      "?notify=ops@acme.example",
    );
  });

  it.each([
    // fetch refuses such a URL, and its error message quotes it whole, password included
    [
      "https://gateway:hunter2@gw.example/send",
      "it must not carry a user or password (requests refuse a URL with credentials)",
    ],
    ["https://gw.example:70000/send", "the port must be 1-65535"],
    ["https://gw.example/send#hunter2", "it has a '#' fragment, which no provider reads"],
    ["https://", "it has no host"],
    ["https://gw example/send", "it does not parse as a URL"],
    ["ftp://gw.example", "it must start with http:// or https://"],
  ])("refuses %s, saying why without repeating it", (url, reason) => {
    let thrown: unknown;
    try {
      parseHttpUrl(url);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toEqual(new ProviderUrlError("HTTP", reason));
    expect((thrown as Error).message).not.toMatch(/hunter2|gw\.example|gateway/);
  });
});
