import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import pg from "pg";
import { afterAll, describe, expect, it } from "vitest";
import {
  backendMissing,
  dropSchema,
  probePostgres,
  probeRedis,
  uniqueName,
} from "../../test/cluster/backends.js";
import { newApp } from "../core/apps/apps.js";
import { openAppSecrets, SEALED_PREFIX, sealingAppStore } from "../core/apps/sealed-app-store.js";
import { CodeSecrets } from "../core/secrets.js";
import { openStore } from "../server.js";
import { sqlitePath } from "../storage/sqlite/index.js";
import { ConfigError, loadConfig } from "./load.js";

/**
 * An app's own secrets (Fresns signing secret, captcha vendor secret, test recipients' fixed
 * codes) are sealed in the store under VERIFYD_SECRET: a copy of the database does not give them
 * away, a rotation keeps them, and a process with another secret refuses rather than overwrite.
 */

const FRESNS_SECRET = `fresns-${randomBytes(9).toString("hex")}`;
const CAPTCHA_SECRET = `turnstile-${randomBytes(9).toString("hex")}`;
const TEST_CODE = "735109";
const SHOP = {
  id: "shop",
  fresnsSecret: FRESNS_SECRET,
  abuse: { external: { provider: "turnstile", secret: CAPTCHA_SECRET } },
  testRecipients: [{ to: "review@shop.example", code: TEST_CODE }],
};
const [A, B, C] = [0, 1, 2].map(() => randomBytes(24).toString("base64url")) as [string, string, string];

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/** A data dir with a config file declaring `apps`; returns the environment of a production server. */
function deployment(apps: unknown[]): { dir: string; env: (secrets: string[]) => Record<string, string> } {
  const dir = mkdtempSync(join(tmpdir(), "verifyd-app-secrets-"));
  dirs.push(dir);
  writeFileSync(join(dir, "verifyd.json"), JSON.stringify({ apps }));
  return {
    dir,
    env: (secrets) => ({
      VERIFYD_DATA_DIR: dir,
      VERIFYD_CONFIG: join(dir, "verifyd.json"),
      VERIFYD_MODE: "production",
      VERIFYD_SECRET: secrets.join(","),
    }),
  };
}

function rewriteConfig(dir: string, apps: unknown[]): void {
  writeFileSync(join(dir, "verifyd.json"), JSON.stringify({ apps }));
}

/** Opens the store as a server's start (or, `serving: false`, a CLI command) does, and closes it. */
async function start(env: Record<string, string>, serving = true) {
  const { backend, apps } = await openStore(loadConfig(env), undefined, undefined, { serving });
  try {
    return await apps.stored("shop");
  } finally {
    await backend.close();
  }
}

/** The shop app's document as the SQLite file holds it. */
function storedDocument(dir: string): string {
  const db = new Database(sqlitePath(dir), { readonly: true });
  try {
    return (db.prepare("SELECT data FROM apps WHERE id = 'shop'").get() as { data: string }).data;
  } finally {
    db.close();
  }
}

describe("app secrets at rest (SQLite)", () => {
  it("are in neither the database nor its WAL, and read back whole", async () => {
    const { dir, env } = deployment([SHOP]);
    const app = await start(env([A]));
    expect(app?.fresnsSecret).toBe(FRESNS_SECRET);
    expect(app?.abuse.external?.secret).toBe(CAPTCHA_SECRET);
    expect(app?.testRecipients).toEqual([{ to: "review@shop.example", code: TEST_CODE }]);

    const files = [sqlitePath(dir), `${sqlitePath(dir)}-wal`].filter(existsSync);
    expect(files.length).toBeGreaterThan(0);
    for (const file of files) {
      const bytes = readFileSync(file).toString("latin1");
      for (const secret of [FRESNS_SECRET, CAPTCHA_SECRET, `"code":"${TEST_CODE}"`]) {
        expect(bytes).not.toContain(secret);
      }
    }
    const document = JSON.parse(storedDocument(dir));
    expect(document.fresnsSecret).toMatch(new RegExp(`^${SEALED_PREFIX}`));
    expect(document.testRecipients[0].to).toBe("review@shop.example"); // only the code is secret
  });

  it("survive a rotation: [B, A] reads them and seals them anew under B, so A can go", async () => {
    const { dir, env } = deployment([SHOP]);
    await start(env([A]));
    const underA = storedDocument(dir);
    expect((await start(env([B, A])))?.fresnsSecret).toBe(FRESNS_SECRET);
    expect(storedDocument(dir)).not.toBe(underA);
    const opened = openAppSecrets(JSON.parse(storedDocument(dir)), new CodeSecrets([B]), "");
    expect(opened).toMatchObject({ unreadable: [], stale: false });
    expect((await start(env([B])))?.testRecipients[0]?.code).toBe(TEST_CODE);
  });

  it("are sealed at a server's start when an earlier version stored them in clear", async () => {
    const { dir, env } = deployment([{ id: "shop" }]);
    await start(env([A]));
    const legacy = { ...JSON.parse(storedDocument(dir)), fresnsSecret: FRESNS_SECRET };
    const db = new Database(sqlitePath(dir));
    db.prepare("UPDATE apps SET data = ? WHERE id = 'shop'").run(JSON.stringify(legacy));
    db.close();

    expect((await start(env([A]), false))?.fresnsSecret).toBe(FRESNS_SECRET); // the CLI reads it
    expect(storedDocument(dir)).toContain(FRESNS_SECRET); // and writes nothing
    expect((await start(env([A])))?.fresnsSecret).toBe(FRESNS_SECRET);
    expect(storedDocument(dir)).not.toContain(FRESNS_SECRET);
  });

  it("refuse a start whose secrets do not open them, naming the app and setting", async () => {
    const { dir, env } = deployment([SHOP]);
    await start(env([A]));
    rewriteConfig(dir, [{ id: "shop" }]); // the file no longer gives the secrets
    const before = storedDocument(dir);
    const refusal = await start(env([C])).catch((error: unknown) => error);
    expect(refusal).toBeInstanceOf(ConfigError);
    const issues = (refusal as ConfigError).issues.join("\n");
    expect(issues).toMatch(
      /app "shop": its fresnsSecret is sealed under a secret VERIFYD_SECRET does not list/,
    );
    expect(issues).toMatch(/its abuse\/external\/secret .* give the app's abuse in the config file/);
    expect(issues).toMatch(/its testRecipients\/0\/code/);
    expect(issues).not.toContain(FRESNS_SECRET);
    expect(storedDocument(dir)).toBe(before);
  });

  it("are taken from the file at a start whose secrets do not open them, when the file gives them", async () => {
    const { dir, env } = deployment([SHOP]);
    await start(env([A]));
    const renewed = { ...SHOP, fresnsSecret: "renewed-fresns-secret" };
    rewriteConfig(dir, [renewed]);
    const app = await start(env([C]));
    expect(app?.fresnsSecret).toBe("renewed-fresns-secret");
    expect(app?.abuse.external?.secret).toBe(CAPTCHA_SECRET);
    expect(openAppSecrets(JSON.parse(storedDocument(dir)), new CodeSecrets([C]), "").unreadable).toEqual([]);
  });

  it("make a CLI command run with another VERIFYD_SECRET refuse, writing nothing", async () => {
    const { dir, env } = deployment([SHOP]);
    await start(env([A]));
    const before = storedDocument(dir);
    const refusal = await start(env([C]), false).catch((error: unknown) => error);
    expect(refusal).toBeInstanceOf(ConfigError);
    expect((refusal as ConfigError).issues[0]).toMatch(
      /app "shop": its fresnsSecret does not open under VERIFYD_SECRET; run this command with the service's VERIFYD_SECRET/,
    );
    expect(storedDocument(dir)).toBe(before);
  });

  // Regression: a CLI run with the next rotation's list (`new,old`) beside servers still on `old`
  // sealed what it wrote under `new`, which the servers could not open. @see fix review A 3
  it("make a CLI command run with the secrets in another order than the servers' refuse", async () => {
    const { dir, env } = deployment([SHOP]);
    await start(env([A]));
    const before = storedDocument(dir);
    const refusal = await start(env([B, A]), false).catch((error: unknown) => error);
    expect(refusal).toBeInstanceOf(ConfigError);
    expect((refusal as ConfigError).issues[0]).toMatch(
      /app "shop": its fresnsSecret is sealed under a secret VERIFYD_SECRET lists after the first/,
    );
    expect(storedDocument(dir)).toBe(before);
    expect((await start(env([A, B]), false))?.fresnsSecret).toBe(FRESNS_SECRET); // the servers' order
  });
});

describe("an app read by a process without the secret that sealed it", () => {
  it("fails closed: the settings are replaced by values nobody knows, and the process is told", async () => {
    const sealedUnderA: unknown[] = [];
    const store = {
      get: async () => sealedUnderA[0] as never,
      getByClientId: async () => null,
      getByApiKeyHash: async () => null,
      list: async () => [],
      save: async (app: unknown) => void sealedUnderA.push(app),
      create: async () => true,
      update: async () => null,
    };
    await sealingAppStore(store, new CodeSecrets([A])).save(
      newApp({ ...SHOP, abuse: { ...newApp({ id: "shop" }).abuse, ...SHOP.abuse } } as never),
    );
    const told: string[][] = [];
    const app = await sealingAppStore(store, new CodeSecrets([C]), (_id, paths) => told.push(paths)).get(
      "shop",
    );
    expect(told).toEqual([["fresnsSecret", "abuse/external/secret", "testRecipients/0/code"]]);
    expect(app?.fresnsSecret).toBeTruthy();
    expect(app?.fresnsSecret).not.toBe(FRESNS_SECRET);
    expect(app?.fresnsSecret).not.toContain(SEALED_PREFIX);
    expect(app?.testRecipients[0]?.code).not.toMatch(/^\d+$/);
  });
});

const [redis, postgres] = await Promise.all([probeRedis(), probePostgres()]);
if (!redis.ok || !postgres.ok) {
  backendMissing(
    "app secrets at rest (PostgreSQL)",
    !redis.ok ? redis.reason : (postgres as { reason: string }).reason,
  );
} else {
  describe("app secrets at rest (PostgreSQL)", () => {
    const schema = uniqueName("app_secrets");
    afterAll(() => dropSchema(postgres.url, schema));

    it("are sealed in the apps table too", async () => {
      const { env } = deployment([SHOP]);
      const cluster = {
        ...env([A]),
        VERIFYD_REDIS_URL: redis.url,
        VERIFYD_REDIS_PREFIX: `${schema}:`,
        VERIFYD_DATABASE_URL: postgres.url,
        VERIFYD_DATABASE_SCHEMA: schema,
      };
      expect((await start(cluster))?.fresnsSecret).toBe(FRESNS_SECRET);
      const client = new pg.Client({ connectionString: postgres.url });
      await client.connect();
      try {
        const { rows } = await client.query(`SELECT data::text AS data FROM ${schema}.apps`);
        const documents = rows.map((row: { data: string }) => row.data).join("\n");
        expect(documents).toContain(SEALED_PREFIX);
        for (const secret of [FRESNS_SECRET, CAPTCHA_SECRET, `"code": "${TEST_CODE}"`]) {
          expect(documents).not.toContain(secret);
        }
      } finally {
        await client.end();
      }
    });
  });
}
