import { describe, expect, it } from "vitest";
import { countryLocale } from "./country-locale.js";
import { composeSmsText } from "./sms-text.js";

describe("composeSmsText", () => {
  const text = "Your Shop sign-in code is 042917.";

  it("leaves the text alone by default", () => {
    expect(composeSmsText(text, "042917", "en", { warning: false })).toBe(text);
  });

  it("adds the warning line in the message's language", () => {
    expect(composeSmsText(text, "042917", "en", { warning: true })).toBe(
      `${text}\nDo not share this code with anyone.`,
    );
    expect(composeSmsText("验证码 042917", "042917", "zh-Hans", { warning: true })).toBe(
      "验证码 042917\n请勿将验证码告知他人。",
    );
    expect(composeSmsText("驗證碼 042917", "042917", "zh-Hant", { warning: true })).toBe(
      "驗證碼 042917\n請勿將驗證碼告知他人。",
    );
    expect(composeSmsText(text, "042917", "fr", { warning: true })).toContain("Do not share");
  });

  it("ends with the WebOTP line, after the warning", () => {
    const composed = composeSmsText(text, "042917", "en", { warning: true, webOtpDomain: "shop.example" });
    expect(composed).toBe(`${text}\nDo not share this code with anyone.\n\n@shop.example #042917`);
    expect(composed.split("\n").at(-1)).toMatch(/^@shop\.example #042917$/);
  });
});

describe("countryLocale", () => {
  it("maps a region to a language verifyd or the app has templates for", () => {
    expect(countryLocale("CN", {}, "sign_in")).toBe("zh-Hans");
    expect(countryLocale("US", {}, "sign_in")).toBe("en");
    expect(countryLocale("GB", {}, "sign_in")).toBe("en");
  });

  it("maps traditional-Chinese regions to zh-Hant when the app has it, else to zh-Hans", () => {
    expect(countryLocale("TW", {}, "sign_in")).toBe("zh-Hans");
    expect(
      countryLocale("TW", { default: { "zh-Hant": { subject: "{app}", text: "{code}" } } }, "sign_in"),
    ).toBe("zh-Hant");
  });

  it("maps only to a locale with a template of the send's purpose", () => {
    const signInOnly = { sign_in: { "zh-Hant": { subject: "{app}", text: "{code}" } } };
    expect(countryLocale("TW", signInOnly, "sign_in")).toBe("zh-Hant");
    expect(countryLocale("TW", signInOnly, "sign_up")).toBe("zh-Hans");
  });

  it("gives nothing for a language without templates, or a region without a clear language", () => {
    expect(countryLocale("JP", {}, "sign_in")).toBeUndefined();
    expect(countryLocale("JP", { default: { ja: { subject: "{app}", text: "{code}" } } }, "sign_in")).toBe(
      "ja",
    );
    expect(countryLocale("CH", {}, "sign_in")).toBeUndefined();
    expect(countryLocale(undefined, {}, "sign_in")).toBeUndefined();
  });
});
