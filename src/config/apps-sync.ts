import { type AppDirectory, DEFAULT_APP_ID, newApp } from "../core/apps/apps.js";
import { OtpError } from "../core/errors.js";
import { sha256Hex } from "../core/ids.js";
import { resolveAbusePolicy, resolvePolicy } from "../core/policy.js";
import type { App, TemplateSet } from "../core/types.js";
import { ConfigError } from "./load.js";
import type { AppConfig } from "./schema.js";

// What messages call the app `default` ({app}) unless the file names it; the app's id would read
// "Your default sign-in code".
const DEFAULT_APP_NAME = "verifyd";

/**
 * An app as the sync stores it. `fileApiKeyHashes` are the API keys the config file gave it at the
 * last start: the next start replaces exactly those by the file's current set, so a key taken out
 * of the file stops working, while the keys `verifyd apps create` minted stay. An app stored by a
 * version without the field counts a key of its own as the file's if the file lists it (for any
 * app), and as minted otherwise.
 */
type SyncedApp = App & { fileApiKeyHashes?: string[] };

/** An app as it is stored now and as the sync leaves it; `index` is its place in the file. */
interface Change {
  index: number | undefined;
  before: SyncedApp | null;
  after: SyncedApp;
}

/**
 * Creates or updates the apps the config file declares (the file wins for the keys it sets; with
 * `dropKeysLeftOut`, the server's sync, keys it gave before and no longer lists are taken off) and
 * makes sure the app `default` exists. The global templates are not copied into apps: the
 * AppDirectory lays them under each app's own when it reads one, so a change to them reaches every
 * app, CLI-created ones included. A client id or API key another app holds is a ConfigError naming
 * the file's key, unless that app gives it up in this same sync.
 */
export async function syncConfiguredApps(
  apps: AppDirectory,
  configured: AppConfig[],
  { dropKeysLeftOut = true }: { dropKeysLeftOut?: boolean } = {},
): Promise<void> {
  const declared = new Set(configured.map((app) => app.id));
  if (!declared.has(DEFAULT_APP_ID) && !(await apps.stored(DEFAULT_APP_ID))) {
    await apps.save(newDefaultApp());
  }
  const fileKeys = configured.map((config) => [...new Set((config.apiKeys ?? []).map(sha256Hex))]);
  const listed = new Set(fileKeys.flat());
  const fromFile = (app: SyncedApp): Set<string> =>
    new Set(app.fileApiKeyHashes ?? app.apiKeyHashes.filter((hash) => listed.has(hash)));

  const changes: Change[] = [];
  for (const [index, config] of configured.entries()) {
    const before = (await apps.stored(config.id)) as SyncedApp | null;
    const file = fileKeys[index] ?? [];
    const given = before ? fromFile(before) : new Set<string>();
    const minted = (before?.apiKeyHashes ?? []).filter((hash) => !given.has(hash));
    const base = before ?? (config.id === DEFAULT_APP_ID ? newDefaultApp() : newApp({ id: config.id }));
    // Without dropKeysLeftOut (the CLI's sync) the file's keys are only added: the next server
    // start, with the service's own file, decides which of them stay. A key the file now gives
    // another app moves, though: that is no removal, and the app taking it could not be saved.
    const givenElsewhere = new Set(fileKeys.flatMap((keys, other) => (other === index ? [] : keys)));
    const fileGiven = dropKeysLeftOut
      ? file
      : [...new Set([...[...given].filter((hash) => !givenElsewhere.has(hash)), ...file])];
    const after: SyncedApp = {
      ...applyAppConfig(base, config),
      apiKeyHashes: [...new Set([...minted, ...fileGiven])],
      fileApiKeyHashes: fileGiven,
    };
    changes.push({ index, before, after });
  }
  // An app the file no longer declares keeps its settings and minted keys, but not the file's keys
  // (the CLI's sync: only those the file now gives a declared app, which move).
  for (const { id } of await apps.list()) {
    const before = declared.has(id) ? null : ((await apps.stored(id)) as SyncedApp | null);
    const fileGave = before ? fromFile(before) : new Set<string>();
    const given = dropKeysLeftOut ? fileGave : new Set([...fileGave].filter((hash) => listed.has(hash)));
    if (!before || given.size === 0) continue;
    const after = { ...before, apiKeyHashes: before.apiKeyHashes.filter((hash) => !given.has(hash)) };
    const stillGiven = [...fileGave].filter((hash) => !given.has(hash));
    changes.push({ index: undefined, before, after: { ...after, fileApiKeyHashes: stillGiven } });
  }

  const clashes = await clashIssues(apps, configured, changes, fromFile);
  if (clashes.length > 0) throw new ConfigError(clashes);

  // Keys first leave the apps that lose them, so a key the file moves from one app to another is
  // free whichever of the two is saved first.
  for (const { index, before, after } of changes) {
    if (!before) continue;
    const leaving = new Set(before.apiKeyHashes.filter((hash) => !after.apiKeyHashes.includes(hash)));
    if (leaving.size === 0) continue;
    // Taken off the app as it is now, not as it was read: a server's start may have changed it
    // since (a CLI command's sync racing it would put back a key that start took off).
    const current = ((await apps.stored(before.id)) as SyncedApp | null) ?? before;
    await save(
      apps,
      {
        ...current,
        apiKeyHashes: current.apiKeyHashes.filter((hash) => !leaving.has(hash)),
        fileApiKeyHashes: [...fromFile(current)].filter((hash) => !leaving.has(hash)),
      },
      index,
    );
  }
  // Then the declared apps, each once the client id it takes is free: one the file moves from
  // another declared app is released when that app is saved.
  let pending = changes.filter((change) => change.index !== undefined);
  while (pending.length > 0) {
    const waiting: { change: Change; holder: string }[] = [];
    for (const change of pending) {
      const holder = await apps.byClientId(change.after.clientId);
      if (holder && holder.id !== change.after.id) waiting.push({ change, holder: holder.id });
      // An app the sync leaves as it is, is not written: a CLI command's sync racing a server's
      // start would put back, from what it read before, a key that start had just taken off.
      else if (!sameApp(change.before, change.after)) await save(apps, change.after, change.index);
    }
    if (waiting.length === pending.length) {
      throw new ConfigError(
        waiting.map(
          ({ change, holder }) =>
            `apps/${change.index}/clientId: client id "${change.after.clientId}" still belongs to app "${holder}" once the other apps are saved (the file keeps it there, or swaps client ids between apps, which takes two starts)`,
        ),
      );
    }
    pending = waiting.map(({ change }) => change);
  }
}

/**
 * The file's client ids and API keys that an app it does not hand them over from already holds:
 * an app the file does not declare (CLI-created, or `default`), or a key `verifyd apps create`
 * minted. Checked before the file's apps are written, so such a file changes none of them.
 */
async function clashIssues(
  apps: AppDirectory,
  configured: AppConfig[],
  changes: Change[],
  fromFile: (app: SyncedApp) => Set<string>,
): Promise<string[]> {
  const declared = new Set(configured.map((app) => app.id));
  const issues: string[] = [];
  for (const { index, after } of changes) {
    if (index === undefined) continue;
    const holder = await apps.byClientId(after.clientId);
    if (holder && holder.id !== after.id && !declared.has(holder.id)) {
      issues.push(
        `apps/${index}/clientId: client id "${after.clientId}" already belongs to app "${holder.id}", which the file does not declare`,
      );
    }
    for (const [keyIndex, key] of (configured[index]?.apiKeys ?? []).entries()) {
      const owner = (await apps.byApiKey(key)) as SyncedApp | null;
      if (owner && owner.id !== after.id && !fromFile(owner).has(sha256Hex(key))) {
        issues.push(
          `apps/${index}/apiKeys/${keyIndex}: already an API key of app "${owner.id}" (not one the file gave it); a key serves one app`,
        );
      }
    }
  }
  return issues;
}

/** Saves an app; the store's refusal of a client id or key another app holds names the file's key. */
function sameApp(before: SyncedApp | null, after: SyncedApp): boolean {
  return before !== null && canonical(before) === canonical(after);
}

/** JSON with every object's keys sorted, so two equal apps read back in any key order compare equal. */
function canonical(value: unknown): string {
  return JSON.stringify(value, (_key, field: unknown) =>
    field && typeof field === "object" && !Array.isArray(field)
      ? Object.fromEntries(Object.entries(field).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : field,
  );
}

async function save(apps: AppDirectory, app: SyncedApp, index: number | undefined): Promise<void> {
  try {
    await apps.save(app);
  } catch (error) {
    // Checked above; only another process saving apps meanwhile gets here.
    if (error instanceof OtpError && error.code === "VALIDATION_FAILED" && index !== undefined) {
      throw new ConfigError([`apps/${index}/${error.details.field ?? "id"}: ${error.message}`]);
    }
    throw error;
  }
}

/**
 * A new app none of whose API keys the file gave, as `verifyd apps create` stores one: a key the
 * file then declares for another app is refused rather than taken from it.
 */
export function newMintedApp(fields: Partial<App> & { id: string }): App {
  const app: SyncedApp = { ...newApp(fields), fileApiKeyHashes: [] };
  return app;
}

/** The app `default` as a fresh store gets it, whether or not the file declares it. */
function newDefaultApp(): App {
  return newMintedApp({ id: DEFAULT_APP_ID, clientId: DEFAULT_APP_ID, name: DEFAULT_APP_NAME });
}

/** The app with the file's settings laid over it; its API keys are the caller's to set. */
function applyAppConfig(app: App, config: AppConfig): App {
  return {
    ...app,
    clientId: config.clientId ?? (config.id === DEFAULT_APP_ID ? DEFAULT_APP_ID : app.clientId),
    ...(config.name !== undefined ? { name: config.name } : {}),
    ...(config.disabled !== undefined ? { disabled: config.disabled } : {}),
    ...(config.faces !== undefined ? { faces: [...config.faces] } : {}),
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
