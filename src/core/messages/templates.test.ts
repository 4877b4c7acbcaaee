import { describe, expect, it } from "vitest";
import { PURPOSES } from "../types.js";
import { BUILT_IN_LOCALES, fillTemplate, findTemplate, resolveLocale } from "./templates.js";

const values = { code: "042917", minutes: 10, app: "Shop" };

describe("built-in templates", () => {
  it("ship English and Simplified Chinese", () => {
    expect(BUILT_IN_LOCALES).toEqual(expect.arrayContaining(["en", "zh-Hans"]));
  });

  it.each(PURPOSES.flatMap((purpose) => BUILT_IN_LOCALES.map((locale) => [purpose, locale] as const)))(
    "%s in %s carries the code and the validity, and leaves no placeholder unfilled",
    (purpose, locale) => {
      const template = findTemplate({}, purpose, locale);
      expect(template).not.toBeNull();
      const text = fillTemplate(template?.text ?? "", values);
      const subject = fillTemplate(template?.subject ?? "", values);
      expect(text).toContain("042917");
      expect(text).toContain("10");
      expect(`${subject} ${text}`).not.toMatch(/\{(code|minutes|app)\}/);
    },
  );

  // Regression: the English reverify subject, "Confirm it is you", did not say which app asked.
  // @see messages review 4
  it.each(PURPOSES.flatMap((purpose) => BUILT_IN_LOCALES.map((locale) => [purpose, locale] as const)))(
    "%s in %s names the app in its subject",
    (purpose, locale) => {
      expect(findTemplate({}, purpose, locale)?.subject).toContain("{app}");
    },
  );

  it("word the sign-in code in each language", () => {
    expect(fillTemplate(findTemplate({}, "sign_in", "en")?.text ?? "", values)).toMatch(
      /^Your Shop sign-in code is 042917\. It expires in 10 minutes\./,
    );
    expect(fillTemplate(findTemplate({}, "sign_in", "zh-Hans")?.text ?? "", values)).toMatch(
      /^您的Shop登录验证码是 042917，10 分钟内有效。/,
    );
  });
});

describe("built-in English for one minute", () => {
  // Regression: a message stating one minute said "It expires in 1 minutes". @see messages review 3
  it.each(PURPOSES)("words %s in the singular for 1 and the plural otherwise", (purpose) => {
    const text = (minutes: number) =>
      fillTemplate(findTemplate({}, purpose, "en", minutes)?.text ?? "", { ...values, minutes });
    expect(text(1)).toContain("It expires in 1 minute.");
    expect(text(2)).toContain("It expires in 2 minutes.");
    expect(text(10)).toContain("It expires in 10 minutes.");
  });

  it("leaves an app's own template as written", () => {
    const own = { default: { en: { subject: "{app}", text: "{code} lasts {minutes} minutes" } } };
    expect(findTemplate(own, "sign_in", "en", 1)?.text).toBe("{code} lasts {minutes} minutes");
  });
});

describe("fillTemplate", () => {
  it("fills every occurrence of {code}, {minutes} and {app}", () => {
    expect(fillTemplate("{app}: {code} {code} ({minutes} min)", values)).toBe("Shop: 042917 042917 (10 min)");
  });

  it("leaves unknown placeholders as written", () => {
    expect(fillTemplate("{user}, {code}", values)).toBe("{user}, 042917");
  });

  it("fills the Fresns aliases {sitename}, {name} and {time}", () => {
    expect(fillTemplate("{sitename}/{name}: {code} ({time} min)", values)).toBe(
      `${values.app}/${values.app}: 042917 (${values.minutes} min)`,
    );
  });

  it("keeps a code's leading zeros", () => {
    expect(fillTemplate("{code}", { ...values, code: "000123" })).toBe("000123");
  });

  it("does not interpret replacement patterns in the app name", () => {
    expect(fillTemplate("{app}", { ...values, app: "$& $1 Shop" })).toBe("$& $1 Shop");
  });
});

describe("findTemplate", () => {
  const custom = {
    sign_in: { en: { subject: "Sign in to {app}", text: "Code {code}" } },
    default: { fr: { subject: "Code {app}", text: "Votre code est {code}" } },
  };

  it("prefers the app's own template for the purpose and locale", () => {
    expect(findTemplate(custom, "sign_in", "en")?.text).toBe("Code {code}");
  });

  it("falls back to the app's default for the locale, then to the built-in one", () => {
    expect(findTemplate(custom, "sign_up", "fr")?.text).toBe("Votre code est {code}");
    expect(findTemplate(custom, "sign_up", "en")?.text).toContain("sign-up code");
  });

  it("returns null for a locale nobody has templates for", () => {
    expect(findTemplate({}, "sign_in", "fr")).toBeNull();
  });
});

describe("resolveLocale", () => {
  it.each([
    [undefined, "en"],
    ["en", "en"],
    ["en-US", "en"],
    ["EN-gb", "en"],
    ["zh-Hans", "zh-Hans"],
    ["zh-CN", "zh-Hans"],
    ["zh", "zh-Hans"],
    ["zh-TW", "zh-Hans"],
    ["fr-FR", "en"],
  ])("maps %j to %j", (requested, expected) => {
    expect(resolveLocale(requested, {}, "en")).toBe(expected);
  });

  it("maps traditional Chinese to zh-Hant when the app has it", () => {
    const templates = { default: { "zh-Hant": { subject: "{app}", text: "{code}" } } };
    expect(resolveLocale("zh-TW", templates, "en")).toBe("zh-Hant");
    expect(resolveLocale("zh-Hant-HK", templates, "en")).toBe("zh-Hant");
  });

  it("knows the locales an app added", () => {
    const templates = { default: { fr: { subject: "{app}", text: "{code}" } } };
    expect(resolveLocale("fr-CA", templates, "en")).toBe("fr");
  });

  it("falls back to the app's default locale", () => {
    expect(resolveLocale("de", {}, "zh-Hans")).toBe("zh-Hans");
  });

  // Regression: a locale with a template for one purpose took every purpose's message to the
  // default locale, where the language family would have found one. @see final review 4
  it("matches among the locales with a template of the purpose, when given one", () => {
    const template = { subject: "{app}", text: "{code}" };
    const templates = { default: { fr: template }, sign_in: { "fr-CA": template, "zh-Hant": template } };
    expect(resolveLocale("fr-CA", templates, "en", "sign_in")).toBe("fr-CA");
    expect(resolveLocale("fr-CA", templates, "en", "sign_up")).toBe("fr");
    expect(resolveLocale("zh-TW", templates, "en", "sign_in")).toBe("zh-Hant");
    expect(resolveLocale("zh-TW", templates, "en", "sign_up")).toBe("zh-Hans");
  });
});

describe("resolveLocale with an app's region locales", () => {
  const template = { subject: "{app}", text: "{code}" };
  const regional = { default: { "zh-CN": template, "en-US": template } };

  // Regression: an app's zh-CN or en-US template was used only when a client sent exactly that
  // spelling; IDaaS's zh_CN, Fresns's zh-Hans, a bare zh or en all got the built-in text.
  // @see messages review 1
  it.each(["zh-CN", "zh_CN", "zh-cn", "ZH_cn", "zh", "zh-Hans", "zh-Hans-CN", "zh-SG"])(
    "reads %j as the app's zh-CN",
    (requested) => {
      expect(resolveLocale(requested, regional, "en")).toBe("zh-CN");
    },
  );

  it.each(["en-US", "en_US", "en-us", "en", "EN", "en-GB"])("reads %j as the app's en-US", (requested) => {
    expect(resolveLocale(requested, regional, "zh-Hans")).toBe("en-US");
  });

  it("falls back from Traditional to the app's own Simplified Chinese before the built-in one", () => {
    expect(resolveLocale("zh_TW", regional, "en")).toBe("zh-CN");
  });

  it("keeps the scripts apart when the app has both", () => {
    const both = { default: { "zh-CN": template, "zh-TW": template } };
    expect(resolveLocale("zh-Hant", both, "en")).toBe("zh-TW");
    expect(resolveLocale("zh_hk", both, "en")).toBe("zh-TW");
    expect(resolveLocale("zh-Hans-HK", both, "en")).toBe("zh-CN");
    expect(resolveLocale("zh", both, "en")).toBe("zh-CN");
  });

  it("matches the exact locale, in any spelling, before another of its family", () => {
    const english = { default: { "en-US": template, "en-GB": template } };
    expect(resolveLocale("en_gb", english, "zh-Hans")).toBe("en-GB");
    expect(resolveLocale("en-AU", english, "zh-Hans")).toBe("en-US");
  });

  it("uses the built-in locale for a purpose the app's region locale has no template of", () => {
    const signInOnly = { sign_in: { "zh-CN": template } };
    expect(resolveLocale("zh_CN", signInOnly, "en", "sign_in")).toBe("zh-CN");
    expect(resolveLocale("zh_CN", signInOnly, "en", "sign_up")).toBe("zh-Hans");
  });
});
