import { randomBytes } from "node:crypto";
import type { AppStore } from "../ports.js";
import type { CodeSecrets } from "../secrets.js";
import type { App } from "../types.js";

/**
 * How a sealed setting starts in the stored app. A value without it is one an earlier version
 * stored in clear: read as it is, and sealed at the next server start.
 */
export const SEALED_PREFIX = "sealed:v1:";

/** What opening an app's stored secrets found. */
export interface OpenedApp {
  app: App;
  /** paths of the settings no configured secret opens (e.g. `fresnsSecret`) */
  unreadable: string[];
  /** paths of the settings a secret other than the first opened */
  underOlderSecret: string[];
  /** some setting is in clear, or sealed under an older secret: it should be sealed anew */
  stale: boolean;
}

/**
 * An app's settings that are secrets of its own: kept sealed (AES-256-GCM, under a key derived
 * from VERIFYD_SECRET) in the store, so a copy of the database or a backup does not give away a
 * Fresns signing secret, a captcha vendor's secret or a test recipient's fixed code.
 */
function mapSecrets(app: App, map: (value: string, path: string) => string): App {
  const external = app.abuse?.external;
  return {
    ...app,
    ...(app.fresnsSecret !== undefined ? { fresnsSecret: map(app.fresnsSecret, "fresnsSecret") } : {}),
    ...(external
      ? {
          abuse: {
            ...app.abuse,
            external: { ...external, secret: map(external.secret, "abuse/external/secret") },
          },
        }
      : {}),
    ...(app.testRecipients
      ? {
          testRecipients: app.testRecipients.map((recipient, index) => ({
            ...recipient,
            code: map(recipient.code, `testRecipients/${index}/code`),
          })),
        }
      : {}),
  };
}

function sealAppSecrets(app: App, secrets: CodeSecrets): App {
  return mapSecrets(app, (value) => SEALED_PREFIX + secrets.sealSetting(value));
}

/**
 * The app with its secrets opened. One no configured secret opens is replaced by `unreadableValue`
 * (a random value nobody knows: a Fresns signature, a captcha token or a code checked against it
 * fails, so the setting fails closed rather than being dropped).
 */
export function openAppSecrets(app: App, secrets: CodeSecrets, unreadableValue: string): OpenedApp {
  const unreadable: string[] = [];
  const underOlderSecret: string[] = [];
  let inClear = false;
  const opened = mapSecrets(app, (value, path) => {
    if (!value.startsWith(SEALED_PREFIX)) {
      inClear = true;
      return value;
    }
    const setting = secrets.openSetting(value.slice(SEALED_PREFIX.length));
    if (!setting) {
      unreadable.push(path);
      return unreadableValue;
    }
    if (!setting.newest) underOlderSecret.push(path);
    return setting.plaintext;
  });
  return { app: opened, unreadable, underOlderSecret, stale: inClear || underOlderSecret.length > 0 };
}

/**
 * The AppStore with each app's secrets sealed on save and opened on read. A setting sealed under a
 * secret the server no longer has (another process of a cluster rotated first) fails closed, and
 * `onUnreadable` is told; a start refuses such a store (see `settleAppSecrets`).
 */
export function sealingAppStore(
  store: AppStore,
  secrets: CodeSecrets,
  onUnreadable: (appId: string, paths: string[]) => void = () => {},
): AppStore {
  const unreadableValue = randomBytes(32).toString("base64url");
  const open = (app: App | null): App | null => {
    if (!app) return null;
    const opened = openAppSecrets(app, secrets, unreadableValue);
    if (opened.unreadable.length > 0) onUnreadable(app.id, opened.unreadable);
    return opened.app;
  };
  return {
    get: async (id) => open(await store.get(id)),
    getByClientId: async (clientId) => open(await store.getByClientId(clientId)),
    getByApiKeyHash: async (hash) => open(await store.getByApiKeyHash(hash)),
    list: async () => (await store.list()).map((app) => open(app) as App),
    save: (app) => store.save(sealAppSecrets(app, secrets)),
    create: (app) => store.create(sealAppSecrets(app, secrets)),
    update: async (id, change) =>
      open(await store.update(id, (stored) => sealAppSecrets(change(open(stored) as App), secrets))),
  };
}
