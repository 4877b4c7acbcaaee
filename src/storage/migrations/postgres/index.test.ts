import type pg from "pg";
import { describe, expect, it } from "vitest";
import { backendMissing, probePostgres } from "../../../../test/cluster/backends.js";
import { poolOnOwnSchema } from "../../../../test/cluster/schema-pool.js";
import { newApp } from "../../../core/apps/apps.js";
import { createPostgresAccountDirectory } from "../../postgres/postgres-account-directory.js";
import { createPostgresAppStore } from "../../postgres/postgres-app-store.js";
import { migratePostgres } from "../../postgres/postgres-migrator.js";
import { ACCOUNTS_BEFORE_MAILBOX_KEYS, expectAccountsKeyedByMailbox } from "../mailbox-keys.contract.js";
import { POSTGRES_MIGRATIONS } from "./index.js";

/** The schema as an earlier release left it: the migrations up to `version`. */
async function schemaAt(pool: pg.Pool, schema: string, version: number): Promise<void> {
  await pool.query(`CREATE SCHEMA ${schema}`);
  await pool.query(
    "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at bigint NOT NULL)",
  );
  for (const migration of POSTGRES_MIGRATIONS.filter((each) => each.version <= version)) {
    await pool.query(migration.sql);
    await pool.query("INSERT INTO schema_migrations VALUES ($1, $2, 0)", [migration.version, migration.name]);
  }
}

/** The versions a schema at `version` has still to apply: `version` + 1 and every one after. */
const versionsAfter = (version: number) =>
  POSTGRES_MIGRATIONS.map((migration) => migration.version).filter((each) => each > version);

const probe = await probePostgres();
if (!probe.ok) {
  backendMissing("postgres migrations 6 and 7", probe.reason);
} else {
  const url = probe.url;
  describe("postgres migration 6", () => {
    const { schema, pool } = poolOnOwnSchema(url, "pgmig");

    // Regression: a key saved for a second app moved to it, and the first app's document kept
    // listing it; with saves refusing such a key, that app could not be saved again. @see core review 3
    it("keeps in each app's document only the API keys that reach it, so every app can be saved again", async () => {
      await schemaAt(pool(), schema, 5);
      // What the old ON CONFLICT DO UPDATE left: "shared" moved to beta; "dropped" left beta later.
      const alpha = newApp({ id: "alpha", name: "Alpha", apiKeyHashes: ["own", "shared", "dropped"] });
      const beta = newApp({ id: "beta", apiKeyHashes: ["shared"] });
      for (const app of [alpha, beta]) {
        await pool().query("INSERT INTO apps (id, client_id, data) VALUES ($1, $2, $3)", [
          app.id,
          app.clientId,
          JSON.stringify(app),
        ]);
      }
      await pool().query(
        "INSERT INTO app_keys (key_hash, app_id) VALUES ('own', 'alpha'), ('shared', 'beta')",
      );

      expect(await migratePostgres(pool(), schema)).toEqual(versionsAfter(5));

      const apps = createPostgresAppStore(pool());
      expect(await apps.get("alpha")).toEqual({ ...alpha, apiKeyHashes: ["own"] });
      expect(await apps.get("beta")).toEqual(beta);
      await apps.save({ ...alpha, apiKeyHashes: ["own"], disabled: true });
      expect(await apps.getByApiKeyHash("shared")).toEqual(beta);
    });
  });

  describe("postgres migration 7", () => {
    const { schema, pool } = poolOnOwnSchema(url, "pgmig");

    // Regression: accounts were keyed by the email's exact spelling, so one mailbox could have two
    // accounts, and the unique index on the folded email must build over what that left. @see badinput F2
    it("keys each mailbox to its oldest account, and keeps a younger one an earlier version let in", async () => {
      await schemaAt(pool(), schema, 6);
      for (const each of ACCOUNTS_BEFORE_MAILBOX_KEYS) {
        await pool().query(
          "INSERT INTO accounts (id, app_id, email, profile, created_at) VALUES ($1, $2, $3, '{}', $4)",
          [each.id, each.appId, each.email, each.createdAtMs],
        );
      }

      expect(await migratePostgres(pool(), schema)).toEqual(versionsAfter(6));

      await expectAccountsKeyedByMailbox(createPostgresAccountDirectory(pool()));
    });
  });
}
