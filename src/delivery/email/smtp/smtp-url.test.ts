import { describe, expect, it } from "vitest";
import { ProviderUrlError } from "../../provider-url.js";
import { parseSmtpUrl } from "./smtp-url.js";

/** The refusal's message, checked to repeat none of the URL's credentials, host or port. */
function refusal(url: string, secrets: string[]): string {
  let thrown: unknown;
  try {
    parseSmtpUrl(url);
  } catch (error) {
    thrown = error;
  }
  expect(thrown).toBeInstanceOf(ProviderUrlError);
  const message = (thrown as ProviderUrlError).message;
  for (const secret of secrets) expect(message).not.toContain(secret);
  return message;
}

const ENCODE = "a '%', '#', '?' or '/' in the user or password must be percent-encoded (%25, %23, %3F, %2F)";

describe("parseSmtpUrl", () => {
  it("reads host, port, TLS mode and percent-decoded credentials", () => {
    expect(
      parseSmtpUrl(
        "smtp://mailer%40acme.example:Tr0ub4dor%233%2050%25off@smtp.example.com:2525?requireTLS=true",
      ),
    ).toEqual({
      host: "smtp.example.com",
      port: 2525,
      secure: false,
      requireTLS: true,
      auth: { user: "mailer@acme.example", pass: "Tr0ub4dor#3 50%off" },
    });
    expect(parseSmtpUrl("smtp://relay.example")).toEqual({
      host: "relay.example",
      port: 587,
      secure: false,
      requireTLS: false,
    });
    expect(parseSmtpUrl("smtps://relay.example")).toMatchObject({ port: 465, secure: true });
  });

  // @see .scratch/ops-review/bad-smtp-url-prod.mjs: these passed the config's prefix pattern and
  // crash-looped the delivery thread.
  it.each([
    ["smtp://mailer:Tr0ub4dor#3@smtp.example.com:587", ["Tr0ub4dor", "mailer", "smtp.example"], ENCODE],
    ["smtp://mailer:50%off@mail.example:587", ["50%off", "mailer", "mail.example"], ENCODE],
    ["smtp://h:99999", ["99999"], "the port must be 1-65535"],
  ])("refuses %s, saying why without repeating it", (url, secrets, reason) => {
    expect(refusal(url, secrets)).toBe(`not a valid SMTP URL: ${reason}`);
  });

  it("refuses a password whose unencoded '#' or '?' leaves a URL that parses as another host", () => {
    // new URL reads these as host "mailer", port 12: the sender would connect there without logging in.
    expect(refusal("smtp://mailer:12#3@smtp.example.com:587", ["12#3", "mailer"])).toContain(ENCODE);
    expect(refusal("smtp://mailer:12?3@smtp.example.com:587", ["12?3", "mailer"])).toContain(ENCODE);
    expect(refusal("smtp://mailer:12/3@smtp.example.com:587", ["12/3", "mailer"])).toContain(ENCODE);
  });

  it("refuses port 0, a missing host, a fragment and another protocol", () => {
    expect(refusal("smtp://relay.example:0", [])).toBe("not a valid SMTP URL: the port must be 1-65535");
    expect(refusal("smtp://", [])).toBe("not a valid SMTP URL: it has no host");
    expect(refusal("smtp://mailer:pw@:587", ["pw"])).toBe("not a valid SMTP URL: it has no host");
    expect(refusal("smtp://relay.example:587#main", [])).toBe(
      "not a valid SMTP URL: it has a '#' fragment, which no provider reads",
    );
    expect(refusal("http://relay.example", [])).toBe(
      "not a valid SMTP URL: it must start with smtp:// or smtps://",
    );
  });
});
