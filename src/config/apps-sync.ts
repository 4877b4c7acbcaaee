import { type AppDirectory, DEFAULT_APP_ID, newApp } from "../core/apps/apps.js";
import { sha256Hex } from "../core/ids.js";
import { resolveAbusePolicy, resolvePolicy } from "../core/policy.js";
import type { App, TemplateSet } from "../core/types.js";
import type { AppConfig } from "./schema.js";

// What messages call the app `default` ({app}) unless the file names it; the app's id would read
// "Your default sign-in code".
const DEFAULT_APP_NAME = "verifyd";

/**
 * Creates or updates the apps the config file declares (the file wins for the keys it sets) and
 * makes sure the app `default` exists. The global templates are not copied into apps: the
 * AppDirectory lays them under each app's own when it reads one, so a change to them reaches every
 * app, CLI-created ones included.
 */
export async function syncConfiguredApps(apps: AppDirectory, configured: AppConfig[]): Promise<void> {
  const declared = new Map(configured.map((app) => [app.id, app]));
  if (!declared.has(DEFAULT_APP_ID) && !(await apps.stored(DEFAULT_APP_ID))) {
    await apps.save(newDefaultApp());
  }
  for (const config of configured) {
    const existing =
      (await apps.stored(config.id)) ??
      (config.id === DEFAULT_APP_ID ? newDefaultApp() : newApp({ id: config.id }));
    await apps.save(applyAppConfig(existing, config));
  }
}

/** The app `default` as a fresh store gets it, whether or not the file declares it. */
function newDefaultApp(): App {
  return newApp({ id: DEFAULT_APP_ID, clientId: DEFAULT_APP_ID, name: DEFAULT_APP_NAME });
}

function applyAppConfig(app: App, config: AppConfig): App {
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
    ...(config.templates !== undefined ? { templates: config.templates as TemplateSet } : {}),
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
