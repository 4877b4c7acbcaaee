import { describe, expect, it } from "vitest";
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

  // Regression: the warning read "hk" anywhere in the locale as Traditional, so an app template in
  // zh-Hans-HK (Simplified, by its explicit script) got a Traditional warning under it.
  it.each([
    ["zh-Hans-HK", "请勿将验证码告知他人。"],
    ["zh_CN", "请勿将验证码告知他人。"],
    ["zh-HK", "請勿將驗證碼告知他人。"],
    ["zh-Hant-CN", "請勿將驗證碼告知他人。"],
  ])("reads %s's script as the templates do", (locale, warning) => {
    expect(composeSmsText("验证码 042917", "042917", locale, { warning: true }).split("\n").at(-1)).toBe(
      warning,
    );
  });

  it("ends with the WebOTP line, after the warning", () => {
    const composed = composeSmsText(text, "042917", "en", { warning: true, webOtpDomain: "shop.example" });
    expect(composed).toBe(`${text}\nDo not share this code with anyone.\n\n@shop.example #042917`);
    expect(composed.split("\n").at(-1)).toMatch(/^@shop\.example #042917$/);
  });
});
