import { describe, expect, it } from "vitest";
import { countryLocale } from "./country-locale.js";

const template = { subject: "{app}", text: "{code}" };

describe("countryLocale", () => {
  it("suggests the region's language when a template has it", () => {
    expect(countryLocale("CN", {}, "sign_in")).toBe("zh-Hans");
    expect(countryLocale("US", {}, "sign_in")).toBe("en");
    expect(countryLocale("GB", {}, "sign_in")).toBe("en");
    expect(countryLocale("JP", { default: { ja: template } }, "sign_in")).toBe("ja");
  });

  it("suggests nothing for a region without a language or without a template in it", () => {
    expect(countryLocale(undefined, {}, "sign_in")).toBeUndefined();
    expect(countryLocale("CH", {}, "sign_in")).toBeUndefined();
    expect(countryLocale("JP", {}, "sign_in")).toBeUndefined();
  });

  // Regression: Taiwan, Hong Kong and Macau numbers got Simplified Chinese over the app's default
  // language, since no template has Traditional and Traditional fell back to Simplified; that
  // fallback is for a client that asked for Chinese, not for a guess from the number.
  // @see messages review 2
  it.each(["TW", "HK", "MO"])(
    "suggests nothing for %s unless a template has Traditional Chinese",
    (region) => {
      expect(countryLocale(region, {}, "sign_in")).toBeUndefined();
      expect(countryLocale(region, { default: { "zh-CN": template } }, "sign_in")).toBeUndefined();
      expect(countryLocale(region, { default: { "zh-Hant": template } }, "sign_in")).toBe("zh-Hant");
      expect(countryLocale(region, { sign_in: { "zh-TW": template } }, "sign_in")).toBe("zh-TW");
      expect(countryLocale(region, { sign_in: { "zh-TW": template } }, "sign_up")).toBeUndefined();
    },
  );

  it("prefers the app's own locale of the region's language", () => {
    expect(countryLocale("US", { default: { "en-US": template } }, "sign_in")).toBe("en-US");
    expect(countryLocale("CN", { sign_in: { "zh-cn": template } }, "sign_in")).toBe("zh-cn");
  });
});
