import { appNameFlaw, DEFAULT_APP_ID, MAX_CLIENT_ID_LENGTH, mergeTemplates } from "../core/apps/apps.js";
import { BUILT_IN_LOCALES, findTemplate } from "../core/messages/templates.js";
import { DEFAULT_POLICY } from "../core/policy.js";
import { parseAnyRecipient } from "../core/recipients.js";
import { PURPOSES, type TemplateSet } from "../core/types.js";
import { parseHttpUrl } from "../delivery/provider-url.js";
import { urlIssue } from "./provider-schema.js";
import type { AppConfig } from "./schema.js";

/**
 * The config file's apps and templates checked across fields, each issue naming its key: what the
 * schema lets through but the service could not work with (a key serving two apps, a test code
 * that can never be checked, a message without its code, a default locale without templates).
 * `defaultCountry` is undefined when it is itself refused: test recipients' addresses are then
 * checked once it is fixed, rather than each reported as the wrong country's.
 */
export function appIssues(
  apps: AppConfig[],
  templates: TemplateSet,
  defaultCountry: string | undefined,
): string[] {
  const issues = templateIssues(templates, "templates");
  const ids = new Set<string>();
  const clientIds = new Set<string>();
  // Where each key was first declared: the app's index and the key's path.
  const keys = new Map<string, { app: number; path: string }>();
  apps.forEach((app, index) => {
    const at = `apps/${index}`;
    if (ids.has(app.id)) issues.push(`${at}/id: app "${app.id}" is declared twice`);
    ids.add(app.id);
    const clientId = app.clientId ?? app.id;
    // Held to the rule a request's client id is (not to the schema's own count, which could differ
    // from it): a request naming an app it refuses would be answered as naming no app.
    const flaw = appNameFlaw(clientId, MAX_CLIENT_ID_LENGTH);
    if (flaw === "length") {
      issues.push(
        `${at}/clientId: must not have more than ${MAX_CLIENT_ID_LENGTH} characters: no request could name the app`,
      );
    } else if (flaw === "characters") {
      issues.push(
        `${at}/clientId: must not contain control characters (line breaks, tabs, NUL, …), U+FFFD or unpaired surrogates: no request could name the app`,
      );
    }
    if (clientIds.has(clientId)) issues.push(`${at}/clientId: client id "${clientId}" is used twice`);
    else if (app.id !== DEFAULT_APP_ID && clientId === DEFAULT_APP_ID) {
      // The app default always exists with this client id, declared or not.
      issues.push(`${at}/clientId: client id "${DEFAULT_APP_ID}" is the app "${DEFAULT_APP_ID}"'s`);
    }
    clientIds.add(clientId);
    if (app.id === DEFAULT_APP_ID && app.clientId !== undefined && app.clientId !== DEFAULT_APP_ID) {
      issues.push(`${at}/clientId: the app "${DEFAULT_APP_ID}" always has client id "${DEFAULT_APP_ID}"`);
    }
    // A key names the app a request is for, so one key cannot stand for two; the key itself is a
    // secret and never printed.
    (app.apiKeys ?? []).forEach((key, keyIndex) => {
      const path = `${at}/apiKeys/${keyIndex}`;
      const first = keys.get(key);
      if (!first) keys.set(key, { app: index, path });
      else if (first.app !== index)
        issues.push(`${path}: the same key as ${first.path}; a key serves one app`);
    });
    issues.push(...testRecipientIssues(app, at, defaultCountry));
    // The captcha verifier fetches it on the request path: a URL fetch cannot use fails every
    // captcha-gated send of the app, so it is refused here.
    issues.push(...urlIssue(`${at}/abuse/external/verifyUrl`, app.abuse?.external?.verifyUrl, parseHttpUrl));
    const external = app.abuse?.external;
    if (external?.sitekey !== undefined && external.provider !== "hcaptcha") {
      issues.push(
        `${at}/abuse/external/sitekey: hCaptcha's alone (${external.provider} binds a secret to one key)`,
      );
    }
    issues.push(...templateIssues(app.templates ?? {}, `${at}/templates`));
    if (app.defaultLocale !== undefined) {
      const issue = defaultLocaleIssue(app.defaultLocale, mergeTemplates(templates, app.templates ?? {}));
      if (issue) issues.push(`${at}/defaultLocale: ${issue}`);
    }
  });
  return issues;
}

/** A test recipient's code is compared with what the app's codes look like, and its `to` as a send's is. */
function testRecipientIssues(app: AppConfig, at: string, defaultCountry: string | undefined): string[] {
  const issues: string[] = [];
  const codeLength = app.policy?.codeLength ?? DEFAULT_POLICY.codeLength;
  (app.testRecipients ?? []).forEach((recipient, index) => {
    const path = `${at}/testRecipients/${index}`;
    if (recipient.code.length !== codeLength) {
      issues.push(
        `${path}/code: has ${recipient.code.length} digits but the app's codes have ${codeLength} (policy.codeLength), so it could never be checked`,
      );
    }
    const email = recipient.to.includes("@");
    // Phone numbers are read in the default country, and none is read in a refused one.
    if (!email && defaultCountry === undefined) return;
    try {
      parseAnyRecipient(recipient.to, { defaultCountry: defaultCountry ?? "" });
    } catch {
      const kind = email ? "email address" : `phone number (E.164, or national in ${defaultCountry})`;
      issues.push(`${path}/to: "${recipient.to}" is not a valid ${kind}, so no send would ever match it`);
    }
  });
  return issues;
}

/** A message is sent to deliver its code: a template whose text has no `{code}` would go out without it. */
function templateIssues(templates: TemplateSet, at: string): string[] {
  const issues: string[] = [];
  for (const [purpose, byLocale] of Object.entries(templates)) {
    for (const [locale, template] of Object.entries(byLocale ?? {})) {
      if (!template.text.includes("{code}")) {
        issues.push(
          `${at}/${purpose}/${locale}/text: has no {code}, so the message would not carry the code`,
        );
      }
    }
  }
  return issues;
}

/**
 * Sends without a locale of their own use the app's default one, with no further fallback: every
 * purpose must have a template in it (its own, the `default` one, or a built-in one).
 */
function defaultLocaleIssue(locale: string, templates: TemplateSet): string | undefined {
  const missing = PURPOSES.filter((purpose) => !findTemplate(templates, purpose, locale));
  if (missing.length === 0) return undefined;
  const which =
    missing.length === PURPOSES.length
      ? ", so every send in it would fail"
      : ` for ${missing.join(", ")}, so those sends would fail`;
  return `no template in "${locale}"${which}; add templates.default.${locale} (to the app or the file) or use a built-in locale (${BUILT_IN_LOCALES.join(", ")})`;
}
