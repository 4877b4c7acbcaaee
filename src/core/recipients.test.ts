import { describe, expect, it } from "vitest";
import { OtpError } from "./errors.js";
import { mailboxOf, maskAddress, parseRecipient } from "./recipients.js";
import { recipientCounterKey } from "./verification/keys.js";

const CN = { defaultCountry: "CN" };

function refusal(run: () => unknown): OtpError {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(OtpError);
    return error as OtpError;
  }
  throw new Error("expected the input to be refused");
}

describe("parseRecipient: email", () => {
  it("lower-cases the domain and keeps the local part as written", () => {
    expect(parseRecipient("email", "Ann.Lee+tag@Example.COM", CN)).toMatchObject({
      channel: "email",
      address: "Ann.Lee+tag@example.com",
    });
  });

  // Regression: `gmail.com.` (the same DNS name) was another recipient, whose limits, Gmail dot
  // rule and account look-ups were all its own. @see .scratch/badinput F1
  it("drops one trailing dot of the domain, the DNS root", () => {
    expect(parseRecipient("email", "ann@Gmail.com.", CN).address).toBe("ann@gmail.com");
  });

  // Regression: IDNA reads these as dots, so `gmail.com。` was `gmail.com.` to the limits and to
  // the mail server, another mailbox again. @see .scratch/diff17 finding 1
  it.each(["\u3002", "\uFF0E", "\uFF61"])("reads the label separator %s as a dot", (dot) => {
    expect(parseRecipient("email", `a.nn@gmail${dot}com${dot}`, CN).address).toBe("a.nn@gmail.com");
  });

  // Regression: refused as invisible characters, though such domains are valid (IDNA2008 CONTEXTJ).
  // @see .scratch/diff17 finding 3
  it("keeps a zero-width joiner or non-joiner in the domain, where Persian and Indic names need it", () => {
    expect(
      parseRecipient("email", "ali@\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645.ir", CN).address,
    ).toBe("ali@\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645.ir");
    expect(() => parseRecipient("email", "a\u200cnn@example.com", CN)).toThrow(OtpError);
    // Where IDNA's context rules do not allow it, it only disguises (@see .scratch/diff17b 4,
    // .scratch/diff17c 4); after a virama at a label's end it is part of the name.
    for (const disguised of [
      "ann@gmail.com\u200d",
      "ann@\u200cgmail.com",
      "ann@gm\u200dail.com",
      "ann@\u4f8b\u200d\u5b50.com",
      "ann@\u03b1\u03b2\u200d\u03b3.gr",
      // past what the URL parser takes for the host's end (@see .scratch/diff17d)
      "ann@gmail.com/\u200d",
      "ann@gmail.com?\u200d",
      "ann@gmail.com#\u200c",
      "ann@gmail.com\uff0f\u200d",
    ]) {
      expect(() => parseRecipient("email", disguised, CN), disguised).toThrow(OtpError);
    }
    for (const named of ["ann@\u0d05\u0d35\u0d28\u0d4d\u200d.com", "ann@\u0915\u094d\u200c.com"]) {
      expect(parseRecipient("email", named, CN).address, named).toBe(named);
    }
  });

  it("trims surrounding whitespace", () => {
    expect(parseRecipient("email", "  ann@example.com\t", CN).address).toBe("ann@example.com");
  });

  it.each([
    ["no at sign", "ann.example.com"],
    ["no local part", "@example.com"],
    ["no domain", "ann@"],
    ["a domain without a dot", "ann@localhost"],
    ["a one-letter top-level domain", "ann@example.c"],
    ["two at signs", "ann@b@example.com"],
    ["a space inside", "ann lee@example.com"],
    ["angle brackets", "<ann@example.com>"],
    ["a display name", '"Ann" ann@example.com'],
    ["an empty string", ""],
    ["more than 254 characters", `${"a".repeat(250)}@example.com`],
    ["a NUL character", "ann\u0000@example.com"],
    ["an escape character", "ann@exam\u001bple.com"],
    ["a DEL character", "ann\u007f@example.com"],
    ["bytes that were not UTF-8 (U+FFFD)", "\ufffd\ufffd@example.com"],
    ["a lone surrogate", "ann\ud800@example.com"],
    ["two trailing dots", "ann@example.com.."],
    ["an empty label in the domain", "ann@example..com"],
    ["a domain starting with a dot", "ann@.example.com"],
    ["a zero-width space", "ann\u200b@example.com"],
    ["a right-to-left override", "ann\u202e@example.com"],
    ["a soft hyphen", "an\u00adn@example.com"],
  ])("refuses %s with VALIDATION_FAILED naming the field", (_, input) => {
    const error = refusal(() => parseRecipient("email", input, CN));
    expect(error.code).toBe("VALIDATION_FAILED");
    expect(error.details.field).toBe("to");
    expect(error.message).toBe("to is not a valid email address");
  });

  it("names the caller's field", () => {
    const error = refusal(() => parseRecipient("email", "nope", { ...CN, field: "account" }));
    expect(error.details.field).toBe("account");
    expect(error.message).toContain("account");
  });
});

describe("parseRecipient: phone", () => {
  it.each([
    ["+8613800138000", "MOBILE"],
    ["+12025550123", "FIXED_LINE_OR_MOBILE"],
    ["+441212345678", "FIXED_LINE"],
    ["+19005550123", "PREMIUM_RATE"],
    ["+33810123456", "SHARED_COST"],
    ["+448001234567", "TOLL_FREE"],
  ])("tells what kind of number %s is (%s)", (input, numberType) => {
    expect(parseRecipient("sms", input, CN).numberType).toBe(numberType);
  });

  it("works out no kind for an email", () => {
    expect(parseRecipient("email", "ann@example.com", CN)).not.toHaveProperty("numberType");
  });

  it.each([
    ["+<cc> <number>", "+86 13800138000", {}],
    ["E.164", "+8613800138000", {}],
    ["a national number with its country", "13800138000", { country: "CN" }],
    ["a national number with a lower-case country", "13800138000", { country: "cn" }],
    ["a national number in the default region", "13800138000", {}],
    ["a grouped number", "+86 138-0013-8000", {}],
    ["a number in parentheses", "(+86) 138 0013 8000", {}],
  ])("normalises %s to E.164", (_, input, extra) => {
    expect(parseRecipient("sms", input, { ...CN, ...extra })).toMatchObject({
      channel: "sms",
      address: "+8613800138000",
      country: "CN",
    });
  });

  it("reads a national number in the given country, not the default one", () => {
    expect(parseRecipient("sms", "020 7183 8750", { ...CN, country: "GB" })).toMatchObject({
      address: "+442071838750",
      country: "GB",
    });
    expect(parseRecipient("sms", "(415) 555-0132", { defaultCountry: "US" }).address).toBe("+14155550132");
  });

  it("lets a number with its own country code win over the country given", () => {
    expect(parseRecipient("sms", "+44 20 7183 8750", { ...CN, country: "US" }).address).toBe("+442071838750");
  });

  it.each([
    ["too short", "12345"],
    ["too long", "+86 138001380001234"],
    ["not a number of that country", "+86 12345678901"],
    ["letters", "138oo138ooo"],
    ["an email on the sms channel", "ann@example.com"],
    ["an empty string", ""],
    ["a very long string", "1".repeat(40)],
  ])("refuses a number that is %s with VALIDATION_FAILED naming the field", (_, input) => {
    const error = refusal(() => parseRecipient("sms", input, CN));
    expect(error.code).toBe("VALIDATION_FAILED");
    expect(error.details.field).toBe("to");
    expect(error.message).toBe("to is not a valid phone number");
  });

  it.each(["C", "CHN", "1A", "c1"])("refuses the country %j naming country", (country) => {
    const error = refusal(() => parseRecipient("sms", "13800138000", { ...CN, country }));
    expect(error.code).toBe("VALIDATION_FAILED");
    expect(error.details.field).toBe("country");
  });

  it.each(["ZZ", "QQ"])("refuses a region %j that has no numbers, naming country", (country) => {
    const error = refusal(() => parseRecipient("sms", "13800138000", { ...CN, country }));
    expect(error.details.field).toBe("country");
  });

  it("reads an international number whatever region comes with it", () => {
    for (const written of ["+86 138 0013 8000", "(+86) 138 0013 8000"]) {
      expect(parseRecipient("sms", written, { ...CN, country: "AQ" }).address).toBe("+8613800138000");
    }
    // a national one with a stray "+" after it still needed the region
    expect(refusal(() => parseRecipient("sms", "13800138000+", { ...CN, country: "AQ" })).details.field).toBe(
      "country",
    );
    // and a malformed one is the fault of `to`, not of the region it did not need
    for (const written of ["+86 1", "+999 123", "(+86) 1"]) {
      expect(refusal(() => parseRecipient("sms", written, { ...CN, country: "AQ" })).details.field).toBe(
        "to",
      );
    }
  });
});

describe("maskAddress", () => {
  it("keeps an email's first character and domain", () => {
    expect(maskAddress("email", "ann@example.com")).toBe("a***@example.com");
    expect(maskAddress("email", "A@example.com")).toBe("A***@example.com");
  });

  it("keeps a phone number's leading +country digits and its last two", () => {
    expect(maskAddress("sms", "+8613800138000")).toBe("+86*********00");
    expect(maskAddress("sms", "+442071838750")).toBe("+44********50");
  });

  it("hides a very short number entirely", () => {
    expect(maskAddress("sms", "+12345")).toBe("******");
  });

  it("never shows the whole address", () => {
    for (const address of ["+8613800138000", "+14155550132", "+4915112345678"]) {
      const masked = maskAddress("sms", address);
      expect(masked).toHaveLength(address.length);
      expect(masked).not.toBe(address);
      expect(masked.replaceAll("*", "").length).toBeLessThanOrEqual(5);
    }
  });
});

describe("mailboxOf", () => {
  it.each([
    ["Ann@example.com", "ann@example.com"],
    ["ann+shop@example.com", "ann@example.com"],
    ["ANN+a+b@example.com", "ann@example.com"],
    ["a.n.n@example.com", "a.n.n@example.com"],
    ["A.n.N+x@gmail.com", "ann@gmail.com"],
    ["a.n.n@googlemail.com", "ann@gmail.com"],
    ["+tag@example.com", "+tag@example.com"],
    ["ann@bücher.de", "ann@xn--bcher-kva.de"],
    ["ann@xn--bcher-kva.de", "ann@xn--bcher-kva.de"],
  ])("counts %s as the mailbox %s", (address, mailbox) => {
    expect(mailboxOf("email", address)).toBe(mailbox);
  });

  it("leaves phone numbers as they are", () => {
    expect(mailboxOf("sms", "+8613800138000")).toBe("+8613800138000");
  });

  it("keys send counters per mailbox", () => {
    expect(recipientCounterKey("email", mailboxOf("email", "Ann+1@example.com"), 60)).toBe(
      "r:email:ann@example.com:60",
    );
  });
});
