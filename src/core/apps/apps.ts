import { OtpError } from "../errors.js";
import { newSecretToken, sha256Hex } from "../ids.js";
import { DEFAULT_ABUSE_POLICY, DEFAULT_POLICY, resolveAbusePolicy, resolvePolicy } from "../policy.js";
import type { AppStore, Clock } from "../ports.js";
import { type App, type CaptchaMode, FACES, type Face, type TemplateSet } from "../types.js";

export const DEFAULT_APP_ID = "default";

/** A new app with every default; callers override what they configure. */
export function newApp(fields: Partial<App> & { id: string }): App {
  return {
    clientId: fields.id,
    name: fields.id,
    disabled: false,
    faces: [...FACES],
    apiKeyHashes: [],
    corsOrigins: [],
    policy: DEFAULT_POLICY,
    abuse: DEFAULT_ABUSE_POLICY,
    templates: {},
    defaultLocale: "en",
    testRecipients: [],
    loginOrRegister: false,
    revealAccountExistence: true,
    sms: { warning: false },
    ...fields,
  };
}

/**
 * Fills fields an app stored by an older version lacks, so every reader sees a whole App, and lays
 * the deployment's global templates under the app's own (the app's win, per purpose and locale).
 */
export function normalizeApp(stored: App, globalTemplates: TemplateSet = {}): App {
  return {
    ...newApp({ id: stored.id }),
    ...stored,
    policy: resolvePolicy(stored.policy),
    abuse: resolveAbusePolicy(stored.abuse),
    templates: mergeTemplates(globalTemplates, stored.templates ?? {}),
  };
}

/** `base` with `overrides` laid over it, per purpose and locale. */
export function mergeTemplates(base: TemplateSet, overrides: TemplateSet): TemplateSet {
  const merged: TemplateSet = { ...base };
  for (const [purpose, byLocale] of Object.entries(overrides) as [
    keyof TemplateSet,
    TemplateSet[keyof TemplateSet],
  ][]) {
    merged[purpose] = { ...(base[purpose] ?? {}), ...(byLocale ?? {}) };
  }
  return merged;
}

/** Mints an API key; only its hash is stored, the key itself is shown once. */
export function mintApiKey(): { apiKey: string; apiKeyHash: string } {
  const apiKey = newSecretToken("vk");
  return { apiKey, apiKeyHash: sha256Hex(apiKey) };
}

// Apps change rarely and are read on every request; a short cache keeps the store off the request
// path while letting a change made by the CLI (another process) take effect within seconds.
const APP_CACHE_TTL_MS = 5_000;
// While the app store is unavailable (a PostgreSQL restart or failover), an app loaded this
// recently is served as last loaded, so checks, redeems and CloudBase verifies, whose state is
// in Redis, go on. Five minutes covers a restart or a managed failover (typically under two) with
// room to spare, and bounds how long a change made just before the outage (a disabled app, a
// revoked key: the CLI needs the store too, so none can be made during it) is not yet seen.
export const APP_STALE_MAX_MS = 5 * 60_000;

// The longest id and client id an app can have, in characters (Unicode code points, as people
// count them; an id of emoji is up to twice as long in UTF-16). A longer one names no app: it is
// answered without the store and never cached, so a flood of made-up ids in 16 KB headers cannot
// fill the cache (10,000 of them held ~150 MB). The config file is held to the same bounds by
// `appNameFlaw` (the CLI's are shorter).
export const MAX_APP_ID_LENGTH = 63;
export const MAX_CLIENT_ID_LENGTH = 128;
// What no app id or client id holds (the config file refuses it): a control character (C0, DEL,
// C1), or U+FFFD, what a decoder puts in place of bytes that are not UTF-8. PostgreSQL refuses a
// NUL outright (a 503 where SQLite found no app), and the rest would only ever name nothing.
const NEVER_IN_AN_ID = /[\p{Cc}\uFFFD]/u;

/**
 * Why no app could have `value` as its id (`maxLength` MAX_APP_ID_LENGTH) or client id
 * (MAX_CLIENT_ID_LENGTH): "length" for more than `maxLength` characters, "characters" for what
 * NEVER_IN_AN_ID names or an unpaired surrogate; undefined when an app could. The one rule for
 * what a request names (checked before any store is asked, so that every store answers a value no
 * app can have alike: as no app) and for what the config file declares.
 */
export function appNameFlaw(value: string, maxLength: number): "length" | "characters" | undefined {
  // (the length first: a 16 KB value is refused without a scan)
  if (!hasAtMostCodePoints(value, maxLength)) return "length";
  if (NEVER_IN_AN_ID.test(value) || !value.isWellFormed()) return "characters";
  return undefined;
}

/** Whether an app could have `value` as its id or client id (`appNameFlaw` finds nothing). */
export function couldNameApp(value: string, maxLength: number): boolean {
  return appNameFlaw(value, maxLength) === undefined;
}

function hasAtMostCodePoints(value: string, maxLength: number): boolean {
  // A code point is one or two UTF-16 units: only a value between the two bounds is counted.
  if (value.length <= maxLength) return true;
  if (value.length > 2 * maxLength) return false;
  let count = 0;
  for (const _ of value) if (++count > maxLength) return false;
  return true;
}

interface CacheEntry {
  app: App | null;
  /** when the store gave this answer: served while the store is unavailable until APP_STALE_MAX_MS on */
  loadedAtMs: number;
  /** until when it is served without asking the store (a failed reload moves it on) */
  freshUntilMs: number;
  /** a reload failed since: the store is away, and this answer is served while it is asked again */
  stale?: true;
}

/**
 * Resolves the app of a request (by id, client id or API key) through a short-lived cache. A key
 * is loaded by one request at a time, the others waiting for its answer; while the store is
 * unavailable, a key's last answer is served for up to APP_STALE_MAX_MS, and tried again every
 * APP_CACHE_TTL_MS, so an outage costs one store request per key at a time, not one per request.
 */
export class AppDirectory {
  private readonly cache = new Map<string, CacheEntry>();
  private readonly loading = new Map<string, Promise<App | null>>();
  // Moved on by every write: a load begun before it neither caches its answer nor is joined after it.
  private generation = 0;

  constructor(
    private readonly store: AppStore,
    private readonly clock: Clock,
    /** the config file's `templates`: every app's fallback, CLI-created apps included */
    private readonly globalTemplates: TemplateSet = {},
  ) {}

  // What a request names is text by the time it gets here (http reads a repeated query parameter,
  // an array, as naming no app); whether an app could have it is checked here, for every face.
  byId(id: string): Promise<App | null> {
    if (!couldNameApp(id, MAX_APP_ID_LENGTH)) return Promise.resolve(null);
    return this.cached(`id:${id}`, () => this.store.get(id));
  }

  byClientId(clientId: string): Promise<App | null> {
    if (!couldNameApp(clientId, MAX_CLIENT_ID_LENGTH)) return Promise.resolve(null);
    return this.cached(`client:${clientId}`, () => this.store.getByClientId(clientId));
  }

  byApiKey(apiKey: string): Promise<App | null> {
    return this.cached(apiKeyCacheKey(apiKey), (key) => this.store.getByApiKeyHash(key.slice(4)));
  }

  /**
   * `byId` without waiting, when the answer is cached (undefined otherwise): a hook that can decide
   * synchronously skips a promise round on the hottest refusal path.
   */
  peekById(id: string): App | null | undefined {
    if (!couldNameApp(id, MAX_APP_ID_LENGTH)) return null;
    return this.peek(`id:${id}`);
  }

  /** `byClientId` without waiting, when the answer is cached (undefined otherwise). */
  peekByClientId(clientId: string): App | null | undefined {
    if (!couldNameApp(clientId, MAX_CLIENT_ID_LENGTH)) return null;
    return this.peek(`client:${clientId}`);
  }

  /** `byApiKey` without waiting, when the answer is cached (undefined otherwise). */
  peekByApiKey(apiKey: string): App | null | undefined {
    return this.peek(apiKeyCacheKey(apiKey));
  }

  /** The app named by a client id, enabled and served on `face`, or the OtpError the face renders. */
  async requireByClientId(clientId: string, face: Face): Promise<App> {
    return requireServed(await this.byClientId(clientId), face, "client_id");
  }

  /** The app as stored, without the global templates laid under it (for writers). */
  async stored(id: string): Promise<App | null> {
    const app = await this.store.get(id);
    return app && normalizeApp(app);
  }

  async save(app: App): Promise<void> {
    await this.store.save(app);
    this.forgetAll();
  }

  /** Stores a new app; false when an app has its id or its client id (see AppStore.create). */
  async create(app: App): Promise<boolean> {
    const created = await this.store.create(app);
    this.forgetAll();
    return created;
  }

  /** `change` of the app as `stored` gives it, saved with no write in between; null if there is none. */
  async update(id: string, change: (app: App) => App): Promise<App | null> {
    const updated = await this.store.update(id, (app) => change(normalizeApp(app)));
    this.forgetAll();
    return updated && normalizeApp(updated);
  }

  list(): Promise<App[]> {
    return this.store.list();
  }

  private forgetAll(): void {
    this.cache.clear();
    this.loading.clear();
    this.generation += 1;
  }

  private peek(key: string): App | null | undefined {
    const hit = this.cache.get(key);
    return hit && this.clock.nowMs() < hit.freshUntilMs ? hit.app : undefined;
  }

  private cached(key: string, load: (key: string) => Promise<App | null>): Promise<App | null> {
    const entry = this.cache.get(key);
    const now = this.clock.nowMs();
    if (entry && now < entry.freshUntilMs) return Promise.resolve(entry.app);
    let loading = this.loading.get(key);
    if (!loading) {
      const started: Promise<App | null> = this.reload(key, load).finally(() => {
        if (this.loading.get(key) === started) this.loading.delete(key);
      });
      this.loading.set(key, started);
      loading = started;
    }
    // Once the store is known to be away, the key's last answer is served at once and the store
    // asked behind it: every request of the key waited on each retry, 2-6 s of a stall in 7.
    if (entry?.stale && now - entry.loadedAtMs <= APP_STALE_MAX_MS) {
      loading.catch(() => {});
      return Promise.resolve(entry.app);
    }
    return loading;
  }

  private async reload(key: string, load: (key: string) => Promise<App | null>): Promise<App | null> {
    const generation = this.generation;
    const now = this.clock.nowMs();
    let loaded: App | null;
    try {
      loaded = await load(key);
    } catch (error) {
      return this.stale(key, error);
    }
    const app = loaded && normalizeApp(loaded, this.globalTemplates);
    if (generation !== this.generation) return app;
    // Unknown keys are cached too, but the map is bounded so a flood of random keys cannot grow it.
    if (this.cache.size > 10_000) this.cache.clear();
    this.cache.set(key, { app, loadedAtMs: now, freshUntilMs: now + APP_CACHE_TTL_MS });
    return app;
  }

  /**
   * The answer the store last gave for `key` when it is unavailable now, or `error` again. A stale
   * "no such app" is served too: it can only refuse, never let a request in (at worst an app made
   * just before the outage is answered as unknown rather than 503). Past APP_STALE_MAX_MS the entry
   * is dropped, so the next request asks the store again, and the caller gets the 503.
   */
  private stale(key: string, error: unknown): App | null {
    const entry = this.cache.get(key);
    if (!(error instanceof OtpError && error.code === "STORE_UNAVAILABLE") || entry === undefined)
      throw error;
    const now = this.clock.nowMs();
    if (now - entry.loadedAtMs > APP_STALE_MAX_MS) {
      this.cache.delete(key);
      throw error;
    }
    entry.freshUntilMs = now + APP_CACHE_TTL_MS;
    entry.stale = true;
    return entry.app;
  }
}

/**
 * The app a request names, when it serves the request's face: an app its `faces` leave this face
 * out of does not exist here (so a face with a weaker captcha policy is no way round another's).
 */
export function requireServed(app: App | null, face: Face, field?: string): App {
  if (!app?.faces.includes(face)) {
    throw new OtpError("APP_NOT_FOUND", field ? { details: { field } } : {});
  }
  if (app.disabled) throw new OtpError("APP_DISABLED");
  return app;
}

const CAPTCHA_STRENGTH: Record<CaptchaMode, number> = { never: 0, risk: 1, always: 2 };

/**
 * The strictest and the weakest captcha among the faces an enabled app serves, when they differ: a
 * script sends through the weakest (a production start warns of it).
 */
export function captchaGap(app: App): { strictest: string; weakest: string } | null {
  if (app.disabled || app.faces.length === 0) return null;
  const strength = (face: Face) => CAPTCHA_STRENGTH[app.abuse.captcha[face]];
  let strictest = app.faces[0] as Face;
  let weakest = strictest;
  for (const face of app.faces) {
    if (strength(face) > strength(strictest)) strictest = face;
    if (strength(face) < strength(weakest)) weakest = face;
  }
  if (strength(strictest) === strength(weakest)) return null;
  const named = (face: Face) => `${face} (${app.abuse.captcha[face]})`;
  return { strictest: named(strictest), weakest: named(weakest) };
}

function apiKeyCacheKey(apiKey: string): string {
  return `key:${sha256Hex(apiKey)}`;
}
