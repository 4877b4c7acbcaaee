import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newApp } from "../../core/apps/apps.js";
import type { AppStore } from "../../core/ports.js";
import { hexHash, uniqueId } from "./fixtures.contract.js";

export interface AppStoreFixture {
  apps: AppStore;
  close(): Promise<void>;
}

/** The AppStore contract: apps by id, client id and API key hash; a save replaces the app. */
export function appStoreContract(name: string, open: () => Promise<AppStoreFixture>): void {
  describe(`AppStore contract: ${name}`, () => {
    let fixture: AppStoreFixture;
    let apps: AppStore;
    beforeAll(async () => {
      fixture = await open();
      apps = fixture.apps;
    });
    afterAll(async () => {
      await fixture?.close();
    });

    it("finds a saved app by id, client id and each API key hash", async () => {
      const [keyA, keyB] = [hexHash(), hexHash()];
      const app = newApp({
        id: uniqueId("app").toLowerCase(),
        clientId: uniqueId("client"),
        name: "Shop",
        apiKeyHashes: [keyA, keyB],
        corsOrigins: ["https://shop.example"],
      });
      await apps.save(app);
      expect(await apps.get(app.id)).toEqual(app);
      expect(await apps.getByClientId(app.clientId)).toEqual(app);
      expect(await apps.getByApiKeyHash(keyA)).toEqual(app);
      expect(await apps.getByApiKeyHash(keyB)).toEqual(app);
      expect((await apps.list()).filter((listed) => listed.id === app.id)).toEqual([app]);
    });

    it("replaces an app on save, keys included", async () => {
      const [oldKey, newKey] = [hexHash(), hexHash()];
      const app = newApp({ id: uniqueId("app"), apiKeyHashes: [oldKey] });
      await apps.save(app);
      const changed = { ...app, name: "Renamed", disabled: true, apiKeyHashes: [newKey] };
      await apps.save(changed);
      expect(await apps.get(app.id)).toEqual(changed);
      expect(await apps.getByApiKeyHash(oldKey)).toBeNull();
      expect(await apps.getByApiKeyHash(newKey)).toEqual(changed);
    });

    it("answers null for what does not exist, and lists in id order", async () => {
      expect(await apps.get(uniqueId("none"))).toBeNull();
      expect(await apps.getByClientId(uniqueId("none"))).toBeNull();
      expect(await apps.getByApiKeyHash(hexHash())).toBeNull();
      const ids = (await apps.list()).map((app) => app.id);
      expect(ids).toEqual([...ids].sort());
    });
  });
}
