import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { createTestServer, type TestServer } from "../../test/harness.js";
import { mintApiKey, newApp } from "../core/apps/apps.js";
import { sha256Hex } from "../core/ids.js";
import type { App } from "../core/types.js";
import { newMintedApp, syncConfiguredApps } from "./apps-sync.js";
import { ConfigError } from "./load.js";

/** Apps declared in the config file are created or updated at startup; the file wins for its keys. */

let dataDir: string | undefined;
const servers: TestServer[] = [];
afterEach(async () => {
  for (const server of servers.splice(0)) await server.close();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  dataDir = undefined;
});

/** Starts a server on this test's data dir (created on the first start, kept across restarts). */
async function start(file: Parameters<typeof createTestServer>[0] = {}): Promise<TestServer> {
  dataDir ??= mkdtempSync(join(tmpdir(), "verifyd-apps-sync-"));
  const server = await createTestServer({ dataDir, ...file });
  servers.push(server);
  return server;
}

async function restart(previous: TestServer, file: Parameters<typeof createTestServer>[0] = {}) {
  await previous.close();
  servers.splice(servers.indexOf(previous), 1);
  return start(file);
}

describe("apps from the config file", () => {
  it("always has the app default, with client id default", async () => {
    const t = await start();
    const app = await t.engine.apps.byId("default");
    expect(app).toMatchObject({ id: "default", clientId: "default", name: "verifyd", disabled: false });
    expect(await t.engine.apps.byClientId("default")).toMatchObject({ id: "default" });
  });

  // Regression: declaring `default` without a name on a fresh store named it "default", so its
  // messages read "Your default sign-in code" instead of "Your verifyd sign-in code".
  it("keeps the name verifyd for the app default when the file declares it without one", async () => {
    const t = await start({ apps: [{ id: "default", policy: { codeLength: 8 } }] });
    const app = await t.engine.apps.byId("default");
    expect(app).toMatchObject({ name: "verifyd", clientId: "default", policy: { codeLength: 8 } });
    const sent = await t.fastify.inject({
      method: "POST",
      url: "/v1/verifications",
      payload: { channel: "email", to: "ann@example.com", purpose: "sign_in" },
    });
    expect(sent.statusCode).toBe(201);
    await t.deliverAll();
    expect(t.email.messages.at(-1)?.subject).toBe("Your verifyd sign-in code");
  });

  it("names the app default as the file says", async () => {
    const t = await start({ apps: [{ id: "default", name: "Shop" }] });
    expect((await t.engine.apps.byId("default"))?.name).toBe("Shop");
  });

  it("creates a declared app with its settings", async () => {
    const t = await start({
      apps: [
        {
          id: "shop",
          clientId: "shop-web",
          name: "Shop",
          policy: { codeLength: 8 },
          corsOrigins: ["https://shop.example"],
          testRecipients: [{ to: "review@shop.example", code: "12345678" }],
        },
      ],
    });
    const app = await t.engine.apps.byClientId("shop-web");
    expect(app).toMatchObject({
      id: "shop",
      name: "Shop",
      corsOrigins: ["https://shop.example"],
      testRecipients: [{ to: "review@shop.example", code: "12345678" }],
    });
    // the rest of the policy keeps its defaults
    expect(app?.policy).toMatchObject({ codeLength: 8, codeTtlSeconds: 600, maxAttempts: 5 });
  });

  it("updates a declared app at the next start: the file wins for the keys it sets, the rest stays", async () => {
    let t = await start({ apps: [{ id: "shop", name: "Shop", corsOrigins: ["https://a.example"] }] });
    // A key minted by the CLI (stored hashed) between the two starts.
    const minted = mintApiKey();
    const stored = await t.engine.apps.byId("shop");
    await t.engine.apps.save({ ...stored!, apiKeyHashes: [minted.apiKeyHash] });
    t = await restart(t, {
      apps: [{ id: "shop", name: "Shop 2", apiKeys: ["vk_from_the_config_file_0001"] }],
    });
    const app = await t.engine.apps.byId("shop");
    expect(app?.name).toBe("Shop 2");
    expect(app?.corsOrigins).toEqual(["https://a.example"]);
    // keys from the file are added to the minted ones, hashed like them
    expect(app?.apiKeyHashes).toEqual([minted.apiKeyHash, sha256Hex("vk_from_the_config_file_0001")]);
    expect(await t.engine.apps.byApiKey(minted.apiKey)).toMatchObject({ id: "shop" });
    expect(await t.engine.apps.byApiKey("vk_from_the_config_file_0001")).toMatchObject({ id: "shop" });
  });

  // Regression: the app default kept the templates of its first start for ever. @see issue 2
  it("applies the global templates to the app default, also when they change between starts", async () => {
    const template = (text: string) => ({ sign_in: { en: { subject: "{app}", text } } });
    let t = await start({ configFile: { templates: template("first {code}") } });
    expect((await t.engine.apps.byId("default"))?.templates).toEqual(template("first {code}"));
    t = await restart(t, { configFile: { templates: template("second {code}") } });
    expect((await t.engine.apps.byId("default"))?.templates).toEqual(template("second {code}"));
  });

  // Regression: keys from the file were only ever added, so a key taken out of the file (to
  // revoke it) kept authenticating. @see core review 4
  // Regression: the CLI's sync saved every declared app from what it had read, so one racing a
  // server's start put back a key that start had just taken off. @see final review 2
  it("writes no app a sync leaves as it is", async () => {
    const t = await start({ apps: [{ id: "shop", apiKeys: ["shop-key-0123456789abcdef"] }] });
    const saved: string[] = [];
    const save = t.engine.apps.save.bind(t.engine.apps);
    t.engine.apps.save = async (app) => {
      saved.push(app.id);
      return save(app);
    };
    const config = [{ id: "shop", apiKeys: ["shop-key-0123456789abcdef"] }];
    await syncConfiguredApps(t.engine.apps, config, { dropKeysLeftOut: false });
    await syncConfiguredApps(t.engine.apps, config);
    expect(saved).toEqual([]);
  });

  it("revokes a key taken out of the file at the next start, and keeps the keys the CLI minted", async () => {
    const [first, second] = ["vk_from_the_file_first_0001", "vk_from_the_file_second_002"];
    let t = await start({ apps: [{ id: "shop", apiKeys: [first] }] });
    const minted = mintApiKey();
    const stored = await t.engine.apps.stored("shop");
    await t.engine.apps.save({ ...stored!, apiKeyHashes: [...stored!.apiKeyHashes, minted.apiKeyHash] });
    t = await restart(t, { apps: [{ id: "shop", apiKeys: [second] }] });
    expect(await t.engine.apps.byApiKey(first)).toBeNull();
    expect(await t.engine.apps.byApiKey(second)).toMatchObject({ id: "shop" });
    expect(await t.engine.apps.byApiKey(minted.apiKey)).toMatchObject({ id: "shop" });
    // no apiKeys at all: the file sets none
    t = await restart(t, { apps: [{ id: "shop" }] });
    expect(await t.engine.apps.byApiKey(second)).toBeNull();
    expect((await t.engine.apps.byId("shop"))?.apiKeyHashes).toEqual([minted.apiKeyHash]);
  });

  // @see core review 4
  it("revokes the file's keys of an app the file no longer declares, keeping the app", async () => {
    const key = "vk_from_the_file_dropped_01";
    let t = await start({ apps: [{ id: "shop", name: "Shop", apiKeys: [key] }] });
    t = await restart(t, {});
    expect(await t.engine.apps.byApiKey(key)).toBeNull();
    expect(await t.engine.apps.byId("shop")).toMatchObject({ name: "Shop", apiKeyHashes: [] });
  });

  // @see core review 4
  it("moves a key between two declared apps, whichever the file lists first", async () => {
    const [key, other] = ["vk_moving_between_apps_001", "vk_moving_between_apps_002"];
    let t = await start({
      apps: [
        { id: "alpha", apiKeys: [key] },
        { id: "beta", apiKeys: [other] },
      ],
    });
    t = await restart(t, {
      apps: [
        { id: "beta", apiKeys: [key] },
        { id: "alpha", apiKeys: [other] },
      ],
    });
    expect(await t.engine.apps.byApiKey(key)).toMatchObject({ id: "beta" });
    expect(await t.engine.apps.byApiKey(other)).toMatchObject({ id: "alpha" });
    expect((await t.engine.apps.byId("alpha"))?.apiKeyHashes).toEqual([sha256Hex(other)]);
  });

  // Stored before the sync remembered which keys were the file's: a key counts as the file's only
  // if the file still lists it, so no key the CLI minted is lost by upgrading.
  it("counts a key of an app stored by an older version as the file's only if the file lists it", async () => {
    const [listed, unlisted] = ["vk_older_version_listed_01", "vk_older_version_unlist_02"];
    let t = await start();
    await t.engine.apps.save(
      newApp({ id: "shop", apiKeyHashes: [sha256Hex(unlisted), sha256Hex(listed)] }) as App,
    );
    t = await restart(t, { apps: [{ id: "shop", apiKeys: [listed] }] });
    expect(await t.engine.apps.byApiKey(unlisted)).toMatchObject({ id: "shop" });
    t = await restart(t, { apps: [{ id: "shop" }] });
    expect(await t.engine.apps.byApiKey(listed)).toBeNull();
    expect(await t.engine.apps.byApiKey(unlisted)).toMatchObject({ id: "shop" });
  });

  // Regression: the key of a CLI-created app declared for a file app was silently moved to it.
  // @see core review 3
  it("refuses a key another app holds as minted, naming the file's key, and changes nothing", async () => {
    let t = await start();
    const minted = mintApiKey();
    await t.engine.apps.save(newMintedApp({ id: "blog", apiKeyHashes: [minted.apiKeyHash] }));
    await t.close();
    servers.splice(0);
    const refusal = await start({
      apps: [{ id: "shop", name: "Shop", apiKeys: ["vk_shop_own_key_000000001", minted.apiKey] }],
    }).catch((error: unknown) => error);
    expect(refusal).toBeInstanceOf(ConfigError);
    expect((refusal as ConfigError).issues).toEqual([
      expect.stringMatching(/^apps\/0\/apiKeys\/1: already an API key of app "blog"/),
    ]);
    t = await start();
    expect(await t.engine.apps.byApiKey(minted.apiKey)).toMatchObject({ id: "blog" });
    expect(await t.engine.apps.byId("shop")).toBeNull();
  });

  // Regression: a client id a stored app already has failed startup with a bare
  // "UNIQUE constraint failed: apps.client_id". @see core review 12
  it("refuses a client id an app the file does not declare holds, naming the file's key", async () => {
    const t = await start();
    await t.engine.apps.save(newApp({ id: "blog", clientId: "web" }));
    await t.close();
    servers.splice(0);
    const refusal = await start({ apps: [{ id: "shop", clientId: "web" }] }).catch((error: unknown) => error);
    expect(refusal).toBeInstanceOf(ConfigError);
    expect((refusal as ConfigError).issues).toEqual([
      expect.stringMatching(/^apps\/0\/clientId: client id "web" already belongs to app "blog"/),
    ]);
  });

  it("moves a client id between declared apps, whichever the file lists first", async () => {
    let t = await start({ apps: [{ id: "alpha", clientId: "web" }] });
    t = await restart(t, {
      apps: [
        { id: "beta", clientId: "web" },
        { id: "alpha", clientId: "web-old" },
      ],
    });
    expect(await t.engine.apps.byClientId("web")).toMatchObject({ id: "beta" });
    expect(await t.engine.apps.byClientId("web-old")).toMatchObject({ id: "alpha" });
  });
});
