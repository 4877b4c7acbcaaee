import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newApp } from "../../core/apps/apps.js";
import { OtpError } from "../../core/errors.js";
import type { AppStore } from "../../core/ports.js";
import { hexHash, uniqueId } from "./fixtures.contract.js";

export interface AppStoreFixture {
  apps: AppStore;
  close(): Promise<void>;
}

/**
 * The AppStore contract: apps by id, client id and API key hash; a save replaces the app, a create
 * only adds one, an update changes one with no write in between; an API key or client id serves
 * one app.
 */
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

    // Regression: a key saved for a second app silently moved to it, so the first app's document
    // listed a key that no longer reached it. @see core review 3
    it("refuses an API key hash another app holds, leaving both apps as they were", async () => {
      const [shared, own] = [hexHash(), hexHash()];
      const holder = newApp({ id: uniqueId("app"), apiKeyHashes: [shared] });
      await apps.save(holder);
      const other = newApp({ id: uniqueId("app"), apiKeyHashes: [own] });
      await apps.save(other);
      const refusal = await apps.save({ ...other, name: "Renamed", apiKeyHashes: [own, shared] }).then(
        () => null,
        (error: unknown) => error,
      );
      expect(refusal).toBeInstanceOf(OtpError);
      expect(refusal).toMatchObject({ code: "VALIDATION_FAILED", details: { field: "apiKeys" } });
      expect((refusal as Error).message).toContain(`app "${holder.id}"`);
      expect(await apps.getByApiKeyHash(shared)).toEqual(holder);
      // the refused save changed nothing, the other app's own key included
      expect(await apps.get(other.id)).toEqual(other);
      expect(await apps.getByApiKeyHash(own)).toEqual(other);
    });

    it("refuses a client id another app holds", async () => {
      const holder = newApp({ id: uniqueId("app"), clientId: uniqueId("client") });
      await apps.save(holder);
      const other = newApp({ id: uniqueId("app"), clientId: holder.clientId });
      await expect(apps.save(other)).rejects.toMatchObject({
        code: "VALIDATION_FAILED",
        details: { field: "clientId" },
        message: expect.stringContaining(`app "${holder.id}"`),
      });
      expect(await apps.get(other.id)).toBeNull();
      expect(await apps.getByClientId(holder.clientId)).toEqual(holder);
    });

    it("saves an app again with the keys it holds", async () => {
      const key = hexHash();
      const app = newApp({ id: uniqueId("app"), apiKeyHashes: [key, key] });
      await apps.save(app);
      await apps.save({ ...app, name: "Again" });
      expect(await apps.getByApiKeyHash(key)).toMatchObject({ id: app.id, name: "Again" });
    });

    // Servers starting together each save the config file's apps: the same new key at once must
    // not read as another app's.
    it("saves one app with a new key from many callers at once", async () => {
      for (let round = 0; round < 10; round++) {
        const key = hexHash();
        const app = newApp({ id: uniqueId("app"), apiKeyHashes: [key, hexHash()] });
        await Promise.all(Array.from({ length: 10 }, () => apps.save(app)));
        expect(await apps.getByApiKeyHash(key)).toEqual(app);
      }
    });

    it("creates an app only while no app has its id or its client id", async () => {
      const key = hexHash();
      const app = newApp({ id: uniqueId("app"), clientId: uniqueId("client"), apiKeyHashes: [key] });
      expect(await apps.create(app)).toBe(true);
      expect(await apps.getByApiKeyHash(key)).toEqual(app);
      const [sameId, sameClientId] = [hexHash(), hexHash()];
      expect(await apps.create(newApp({ id: app.id, apiKeyHashes: [sameId] }))).toBe(false);
      expect(
        await apps.create(
          newApp({ id: uniqueId("app"), clientId: app.clientId, apiKeyHashes: [sameClientId] }),
        ),
      ).toBe(false);
      // neither refused create wrote anything
      expect(await apps.get(app.id)).toEqual(app);
      expect(await apps.getByApiKeyHash(sameId)).toBeNull();
      expect(await apps.getByApiKeyHash(sameClientId)).toBeNull();
    });

    it("refuses to create an app with an API key hash another app holds, writing nothing", async () => {
      const shared = hexHash();
      const holder = newApp({ id: uniqueId("app"), apiKeyHashes: [shared] });
      await apps.save(holder);
      const other = newApp({ id: uniqueId("app"), apiKeyHashes: [hexHash(), shared] });
      await expect(apps.create(other)).rejects.toMatchObject({
        code: "VALIDATION_FAILED",
        details: { field: "apiKeys" },
        message: expect.stringContaining(`app "${holder.id}"`),
      });
      expect(await apps.get(other.id)).toBeNull();
      expect(await apps.getByApiKeyHash(other.apiKeyHashes[0] as string)).toBeNull();
      expect(await apps.getByApiKeyHash(shared)).toEqual(holder);
    });

    // Regression: `verifyd apps create` looked for a free id, then saved, which replaced an app of
    // that id another command had created in between, and the key it had printed never worked.
    it("lets one of many creates of one id at once have it, with its keys", async () => {
      const id = uniqueId("app");
      const keys = Array.from({ length: 8 }, () => hexHash());
      const created = await Promise.all(
        keys.map((key) => apps.create(newApp({ id, name: key, apiKeyHashes: [key] }))),
      );
      expect(created.filter(Boolean)).toHaveLength(1);
      const winner = keys[created.indexOf(true)] as string;
      expect(await apps.get(id)).toMatchObject({ name: winner, apiKeyHashes: [winner] });
      for (const key of keys) {
        expect((await apps.getByApiKeyHash(key))?.id ?? null).toBe(key === winner ? id : null);
      }
    });

    it("updates an app as stored, its keys with it, and answers null for no app", async () => {
      const [kept, dropped, added] = [hexHash(), hexHash(), hexHash()];
      const app = newApp({ id: uniqueId("app"), apiKeyHashes: [kept, dropped] });
      await apps.save(app);
      const updated = await apps.update(app.id, (stored) => ({
        ...stored,
        disabled: true,
        apiKeyHashes: [kept, added],
      }));
      expect(updated).toEqual({ ...app, disabled: true, apiKeyHashes: [kept, added] });
      expect(await apps.get(app.id)).toEqual(updated);
      expect(await apps.getByApiKeyHash(dropped)).toBeNull();
      expect(await apps.getByApiKeyHash(added)).toEqual(updated);
      expect(await apps.update(uniqueId("none"), (stored) => stored)).toBeNull();
    });

    it("refuses an update giving an app a client id another app holds, leaving it as it was", async () => {
      const holder = newApp({ id: uniqueId("app"), clientId: uniqueId("client") });
      const app = newApp({ id: uniqueId("app"), apiKeyHashes: [hexHash()] });
      await apps.save(holder);
      await apps.save(app);
      await expect(
        apps.update(app.id, (stored) => ({ ...stored, clientId: holder.clientId })),
      ).rejects.toMatchObject({ code: "VALIDATION_FAILED", details: { field: "clientId" } });
      expect(await apps.get(app.id)).toEqual(app);
    });

    // Regression: `apps disable` and `apps revoke-key` read the app, then saved it whole, so two
    // commands on one app at once lost one of the two changes.
    it("loses none of many updates of one app at once", async () => {
      const keys = Array.from({ length: 8 }, () => hexHash());
      const app = newApp({ id: uniqueId("app"), apiKeyHashes: keys });
      await apps.save(app);
      await Promise.all([
        ...keys.map((key) =>
          apps.update(app.id, (stored) => ({
            ...stored,
            apiKeyHashes: stored.apiKeyHashes.filter((each) => each !== key),
          })),
        ),
        apps.update(app.id, (stored) => ({ ...stored, disabled: true })),
      ]);
      expect(await apps.get(app.id)).toEqual({ ...app, disabled: true, apiKeyHashes: [] });
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
