import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { createTestServer, type TestServer } from "../../test/harness.js";
import { mintApiKey } from "../core/apps/apps.js";
import { sha256Hex } from "../core/ids.js";

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
});
