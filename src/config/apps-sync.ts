import { type AppDirectory, DEFAULT_APP_ID, newApp } from "../core/apps/apps.js";
import { sha256Hex } from "../core/ids.js";
import { resolveAbusePolicy, resolvePolicy } from "../core/policy.js";
import type { App, TemplateSet } from "../core/types.js";
import type { AppConfig } from "./schema.js";

/**
 * Creates or updates the apps the config file declares (the file wins for the keys it sets) and
 * makes sure the app `default` exists. Global templates apply to every app under its own.
 */
export async function syncConfiguredApps(
  apps: AppDirectory,
  configured: AppConfig[],
  globalTemplates: TemplateSet,
): Promise<void> {
  const declared = new Map(configured.map((app) => [app.id, app]));
  if (!declared.has(DEFAULT_APP_ID)) {
    const existing = await apps.byId(DEFAULT_APP_ID);
    // Undeclared, the app `default` has no templates of its own: it takes the file's global ones
    // as they are at this start, not as they were when it was first created.
    if (!existing) {
      await apps.save(
        newApp({ id: DEFAULT_APP_ID, clientId: DEFAULT_APP_ID, name: "verifyd", templates: globalTemplates }),
      );
    } else if (JSON.stringify(existing.templates) !== JSON.stringify(globalTemplates)) {
      await apps.save({ ...existing, templates: globalTemplates });
    }
  }
  for (const config of configured) {
    const existing = (await apps.byId(config.id)) ?? newApp({ id: config.id });
    await apps.save(applyAppConfig(existing, config, globalTemplates));
  }
}

function applyAppConfig(app: App, config: AppConfig, globalTemplates: TemplateSet): App {
  const templates = mergeTemplates(globalTemplates, (config.templates ?? {}) as TemplateSet);
  return {
    ...app,
    clientId: config.clientId ?? (config.id === DEFAULT_APP_ID ? DEFAULT_APP_ID : app.clientId),
    ...(config.name !== undefined ? { name: config.name } : {}),
    ...(config.disabled !== undefined ? { disabled: config.disabled } : {}),
    // Keys from the file are added to those the CLI minted; they are stored hashed like those.
    apiKeyHashes: [...new Set([...app.apiKeyHashes, ...(config.apiKeys ?? []).map(sha256Hex)])],
    ...(config.corsOrigins !== undefined ? { corsOrigins: config.corsOrigins } : {}),
    ...(config.policy !== undefined ? { policy: resolvePolicy(config.policy) } : {}),
    ...(config.abuse !== undefined ? { abuse: resolveAbusePolicy(config.abuse) } : {}),
    templates,
    ...(config.defaultLocale !== undefined ? { defaultLocale: config.defaultLocale } : {}),
    ...(config.testRecipients !== undefined ? { testRecipients: config.testRecipients } : {}),
    ...(config.fresnsSecret !== undefined ? { fresnsSecret: config.fresnsSecret } : {}),
    ...(config.loginOrRegister !== undefined ? { loginOrRegister: config.loginOrRegister } : {}),
    ...(config.revealAccountExistence !== undefined
      ? { revealAccountExistence: config.revealAccountExistence }
      : {}),
    ...(config.sms !== undefined ? { sms: { warning: config.sms.warning ?? false, ...config.sms } } : {}),
  };
}

function mergeTemplates(base: TemplateSet, overrides: TemplateSet): TemplateSet {
  const merged: TemplateSet = { ...base };
  for (const [purpose, byLocale] of Object.entries(overrides) as [
    keyof TemplateSet,
    TemplateSet[keyof TemplateSet],
  ][]) {
    merged[purpose] = { ...(base[purpose] ?? {}), ...(byLocale ?? {}) };
  }
  return merged;
}
