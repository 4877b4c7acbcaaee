import { openAppSecrets } from "../core/apps/sealed-app-store.js";
import { resolveAbusePolicy } from "../core/policy.js";
import type { AppStore } from "../core/ports.js";
import type { CodeSecrets } from "../core/secrets.js";
import type { App } from "../core/types.js";
import { ConfigError } from "./load.js";
import type { AppConfig } from "./schema.js";

/**
 * Makes every stored app's secrets open under VERIFYD_SECRET's list before the config file is
 * applied. A server's start (`serving`) seals anew, under the list's first secret, what is in clear
 * (an earlier version's) or sealed under an older one, so that secret can later be dropped; a
 * setting no listed secret opens is taken from the file when the file gives it, and refused
 * otherwise. A CLI command only checks: run with another VERIFYD_SECRET, or with the list's order
 * changed ahead of the servers (`new,old` while they run on `old`), it would seal what it writes
 * under a secret the servers cannot open, so it refuses rather than write.
 */
export async function settleAppSecrets(
  /** the store as it holds the apps, and the same store sealing what it saves (`sealingAppStore`) */
  { raw: store, sealing }: { raw: AppStore; sealing: AppStore },
  secrets: CodeSecrets,
  configured: AppConfig[],
  { serving }: { serving: boolean },
): Promise<void> {
  const declared = new Map(configured.map((config) => [config.id, config]));
  const issues: string[] = [];
  for (const stored of await store.list()) {
    const { app, unreadable, underOlderSecret, stale } = openAppSecrets(stored, secrets, "");
    if (!serving) {
      for (const path of unreadable) {
        issues.push(
          `app "${app.id}": its ${path} does not open under VERIFYD_SECRET; run this command with the service's VERIFYD_SECRET`,
        );
      }
      for (const path of underOlderSecret) {
        issues.push(
          `app "${app.id}": its ${path} is sealed under a secret VERIFYD_SECRET lists after the first; run this command with the service's VERIFYD_SECRET, in its order (a server's start seals under the first)`,
        );
      }
      continue;
    }
    if (unreadable.length === 0 && !stale) continue;
    const config = declared.get(app.id);
    const lost = unreadable.filter((path) => !givenByFile(config, path));
    for (const path of lost) {
      issues.push(
        `app "${app.id}": its ${path} is sealed under a secret VERIFYD_SECRET does not list; list that secret after the first for one start (a start seals every app's secrets under the first), or give the app's ${topField(path)} in the config file`,
      );
    }
    if (lost.length === 0) await sealing.save(unreadable.length > 0 && config ? fromFile(app, config) : app);
  }
  if (issues.length > 0) throw new ConfigError(issues);
}

/** The setting's top-level field in the config file's app (`abuse`, `testRecipients`, ...). */
function topField(path: string): string {
  return path.split("/")[0] ?? path;
}

/** Whether applying the file sets this setting anew (the sync replaces these fields whole). */
function givenByFile(config: AppConfig | undefined, path: string): boolean {
  return config?.[topField(path) as "fresnsSecret" | "abuse" | "testRecipients"] !== undefined;
}

/**
 * The app with the secret fields the file gives taken from the file, as the sync that follows
 * writes them: never without them meanwhile (another process reading an app without its Fresns
 * secret would stop demanding signatures).
 */
function fromFile(app: App, config: AppConfig): App {
  return {
    ...app,
    ...(config.fresnsSecret !== undefined ? { fresnsSecret: config.fresnsSecret } : {}),
    ...(config.abuse !== undefined ? { abuse: resolveAbusePolicy(config.abuse) } : {}),
    ...(config.testRecipients !== undefined ? { testRecipients: config.testRecipients } : {}),
  };
}
