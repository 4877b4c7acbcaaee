import type { MessageTemplate, Purpose, TemplateSet } from "../types.js";

type BuiltIn = Record<Purpose | "default", MessageTemplate>;

const EN: BuiltIn = {
  default: {
    subject: "Your {app} verification code",
    text: "Your {app} verification code is {code}. It expires in {minutes} minutes.",
  },
  sign_up: {
    subject: "Confirm your {app} sign-up",
    text: "Your {app} sign-up code is {code}. It expires in {minutes} minutes.",
  },
  sign_in: {
    subject: "Your {app} sign-in code",
    text: "Your {app} sign-in code is {code}. It expires in {minutes} minutes. If you did not try to sign in, ignore this message.",
  },
  reset_password: {
    subject: "Reset your {app} password",
    text: "Your {app} password reset code is {code}. It expires in {minutes} minutes. If you did not ask for it, ignore this message.",
  },
  reset_payment_password: {
    subject: "Reset your {app} payment password",
    text: "Your {app} payment password reset code is {code}. It expires in {minutes} minutes.",
  },
  bind_contact: {
    subject: "Confirm your {app} contact",
    text: "Your {app} code to add this contact is {code}. It expires in {minutes} minutes.",
  },
  change_contact: {
    subject: "Confirm your new {app} contact",
    text: "Your {app} code to change your contact is {code}. It expires in {minutes} minutes.",
  },
  change_password: {
    subject: "Confirm your {app} password change",
    text: "Your {app} code to change your password is {code}. It expires in {minutes} minutes.",
  },
  delete_account: {
    subject: "Confirm deleting your {app} account",
    text: "Your {app} code to delete your account is {code}. It expires in {minutes} minutes. If you did not ask for it, secure your account.",
  },
  reverify: {
    subject: "Your {app} security code",
    text: "Your {app} security code is {code}. It expires in {minutes} minutes.",
  },
  generic: {
    subject: "Your {app} verification code",
    text: "Your {app} verification code is {code}. It expires in {minutes} minutes.",
  },
};

const ZH_HANS: BuiltIn = {
  default: { subject: "{app} 验证码", text: "您的{app}验证码是 {code}，{minutes} 分钟内有效。" },
  sign_up: { subject: "{app} 注册验证码", text: "您的{app}注册验证码是 {code}，{minutes} 分钟内有效。" },
  sign_in: {
    subject: "{app} 登录验证码",
    text: "您的{app}登录验证码是 {code}，{minutes} 分钟内有效。如非本人操作，请忽略本消息。",
  },
  reset_password: {
    subject: "{app} 重置密码",
    text: "您的{app}重置密码验证码是 {code}，{minutes} 分钟内有效。如非本人操作，请忽略本消息。",
  },
  reset_payment_password: {
    subject: "{app} 重置支付密码",
    text: "您的{app}重置支付密码验证码是 {code}，{minutes} 分钟内有效。",
  },
  bind_contact: { subject: "{app} 绑定验证码", text: "您的{app}绑定验证码是 {code}，{minutes} 分钟内有效。" },
  change_contact: {
    subject: "{app} 换绑验证码",
    text: "您的{app}换绑验证码是 {code}，{minutes} 分钟内有效。",
  },
  change_password: {
    subject: "{app} 修改密码",
    text: "您的{app}修改密码验证码是 {code}，{minutes} 分钟内有效。",
  },
  delete_account: {
    subject: "{app} 注销账号",
    text: "您的{app}注销账号验证码是 {code}，{minutes} 分钟内有效。如非本人操作，请立即修改密码。",
  },
  reverify: { subject: "{app} 身份验证", text: "您的{app}身份验证码是 {code}，{minutes} 分钟内有效。" },
  generic: { subject: "{app} 验证码", text: "您的{app}验证码是 {code}，{minutes} 分钟内有效。" },
};

const BUILT_IN: Record<string, BuiltIn> = { en: EN, "zh-Hans": ZH_HANS };

// The English texts say "{minutes} minutes"; a message stating one minute reads these instead.
// Chinese has no plural.
const EN_ONE_MINUTE = Object.fromEntries(
  Object.entries(EN).map(([purpose, template]) => [
    purpose,
    { ...template, text: template.text.replace("{minutes} minutes", "{minutes} minute") },
  ]),
) as BuiltIn;
const BUILT_IN_ONE_MINUTE: Record<string, BuiltIn> = { ...BUILT_IN, en: EN_ONE_MINUTE };

/** The locales shipped with verifyd; apps may add more through their templates. */
export const BUILT_IN_LOCALES = Object.keys(BUILT_IN);

/** A locale as clients spell it, compared: "zh_CN", "ZH-cn" and "zh-CN" are one locale. */
export interface LocaleKey {
  /** as configured: the key findTemplate looks up */
  locale: string;
  /** lower case, `_` read as `-` */
  tag: string;
  /** the language, with Chinese split by script: "en", "zh-hans", "zh-hant" */
  family: string;
}

export function localeKey(locale: string): LocaleKey {
  const tag = locale.toLowerCase().replaceAll("_", "-");
  const [language = "", ...subtags] = tag.split("-");
  let family = language;
  if (language === "zh") {
    // An explicit script wins over the region ("zh-Hans-HK" is Simplified); a bare "zh" is Simplified.
    const traditional = subtags.includes("hant")
      ? true
      : subtags.includes("hans")
        ? false
        : subtags.some((subtag) => subtag === "tw" || subtag === "hk" || subtag === "mo");
    family = traditional ? "zh-hant" : "zh-hans";
  }
  return { locale, tag, family };
}

const BUILT_IN_KEYS = BUILT_IN_LOCALES.map(localeKey);

const appLocalesByTemplates = new WeakMap<TemplateSet, Map<string, LocaleKey[]>>();

/**
 * The locales an app has templates in (for `purpose` and its default template, if given), in the
 * order configured: computed once per templates object and purpose.
 */
function appLocales(appTemplates: TemplateSet, purpose?: Purpose): LocaleKey[] {
  let byPurpose = appLocalesByTemplates.get(appTemplates);
  if (!byPurpose) {
    byPurpose = new Map();
    appLocalesByTemplates.set(appTemplates, byPurpose);
  }
  let locales = byPurpose.get(purpose ?? "");
  if (!locales) {
    const sets =
      purpose === undefined ? Object.values(appTemplates) : [appTemplates[purpose], appTemplates.default];
    const names = new Set(sets.flatMap((byLocale) => Object.keys(byLocale ?? {})));
    locales = [...names].map(localeKey);
    byPurpose.set(purpose ?? "", locales);
  }
  return locales;
}

/**
 * The locale with templates (for `purpose`, if given) that serves `requested`, or undefined. The
 * app's own locales come first, the exact one (in any case, `_` or `-`) then one of the same
 * language, before the built-in ones: an app that wrote zh-CN templates wants them for "zh",
 * "zh_CN" and "zh-Hans" alike. Chinese is two languages here, Simplified and Traditional; with
 * `traditionalMayReadSimplified`, Traditional falls back to Simplified when no template has it.
 */
export function matchLocale(
  requested: string,
  appTemplates: TemplateSet,
  purpose?: Purpose,
  { traditionalMayReadSimplified = false } = {},
): string | undefined {
  const wanted = localeKey(requested);
  const own = appLocales(appTemplates, purpose);
  const found =
    own.find((known) => known.tag === wanted.tag) ??
    own.find((known) => known.family === wanted.family) ??
    BUILT_IN_KEYS.find((known) => known.tag === wanted.tag) ??
    BUILT_IN_KEYS.find((known) => known.family === wanted.family);
  if (found) return found.locale;
  if (wanted.family === "zh-hant" && traditionalMayReadSimplified)
    return matchLocale("zh-Hans", appTemplates, purpose);
  return undefined;
}

/**
 * Maps the locale a client asked for to one that has templates (for `purpose`, if given), else to
 * the app's default (see matchLocale). A client that asked for Traditional Chinese reads Simplified
 * rather than another language when no template has Traditional.
 */
export function resolveLocale(
  requested: string | undefined,
  appTemplates: TemplateSet,
  fallback: string,
  purpose?: Purpose,
): string {
  if (!requested) return fallback;
  return matchLocale(requested, appTemplates, purpose, { traditionalMayReadSimplified: true }) ?? fallback;
}

/**
 * The app's template for (purpose, locale), else its default, else the built-in one. Given the
 * `minutes` the message will state, a built-in text is worded for that number ("1 minute").
 */
export function findTemplate(
  templates: TemplateSet,
  purpose: Purpose,
  locale: string,
  minutes?: number,
): MessageTemplate | null {
  const builtIn = (minutes === 1 ? BUILT_IN_ONE_MINUTE : BUILT_IN)[locale];
  return (
    templates[purpose]?.[locale] ??
    templates.default?.[locale] ??
    builtIn?.[purpose] ??
    builtIn?.default ??
    null
  );
}

export interface TemplateValues {
  code: string;
  minutes: number;
  app: string;
}

// Fresns templates name the same values `{time}` (minutes) and `{sitename}` / `{name}` (the app).
const PLACEHOLDERS: Record<string, keyof TemplateValues> = {
  code: "code",
  minutes: "minutes",
  time: "minutes",
  app: "app",
  sitename: "app",
  name: "app",
};

/** Fills `{code}`, `{minutes}` and `{app}` (and Fresns's aliases); unknown placeholders stay as written. */
export function fillTemplate(text: string, values: TemplateValues): string {
  return text.replace(/\{(code|minutes|time|app|sitename|name)\}/g, (_, name: string) =>
    String(values[PLACEHOLDERS[name] as keyof TemplateValues]),
  );
}
