import type pg from "pg";
import { describe, expect, it } from "vitest";
import {
  backendMissing,
  deleteRedisPrefix,
  dropSchema,
  missingReason,
  probePostgres,
  probeRedis,
  uniqueName,
} from "../../../../test/cluster/backends.js";
import { poolOnOwnSchema } from "../../../../test/cluster/schema-pool.js";
import { newApp } from "../../../core/apps/apps.js";
import { createClusterBackend } from "../../cluster/index.js";
import {
  createPostgresAccountDirectory,
  SESSION_OF_CHAIN_SQL,
  SESSION_ROTATED_FROM_SQL,
  SETTLE_EMAIL_KEYS_SQL,
} from "../../postgres/postgres-account-directory.js";
import { createPostgresAppStore } from "../../postgres/postgres-app-store.js";
import { migratePostgres } from "../../postgres/postgres-migrator.js";
import { createPostgresPool } from "../../postgres/postgres-pool.js";
import {
  ACCOUNTS_BEFORE_MAILBOX_KEYS,
  expectAccountsKeyedByMailbox,
  type OlderServerFixture,
  olderServerAccountsContract,
} from "../mailbox-keys.contract.js";
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

/**
 * The plan of a session look-up as the directory prepares it (app, text, time), under the
 * generic plan a prepared statement settles on: one for any argument.
 */
async function genericPlan(pool: pg.Pool, sql: string, args: string): Promise<string> {
  const client = await pool.connect();
  try {
    await client.query("SET plan_cache_mode = force_generic_plan");
    await client.query(`PREPARE look_up (text, text, bigint) AS ${sql}`);
    const { rows } = await client.query<{ "QUERY PLAN": string }>(`EXPLAIN EXECUTE look_up ${args}`);
    return rows.map((row) => row["QUERY PLAN"]).join("\n");
  } finally {
    await client.query("DEALLOCATE ALL");
    await client.query("RESET plan_cache_mode");
    client.release();
  }
}

/** The versions a schema at `version` has still to apply: `version` + 1 and every one after. */
const versionsAfter = (version: number) =>
  POSTGRES_MIGRATIONS.map((migration) => migration.version).filter((each) => each > version);

const probe = await probePostgres();
if (!probe.ok) {
  backendMissing("postgres migrations 6, 7, 10 and 11", probe.reason);
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

  describe("postgres migration 10", () => {
    const { schema, pool } = poolOnOwnSchema(url, "pgmig");

    // Regression: a refresh token presented again after its rotation left the session it had been
    // rotated into alive; finding that session answers every refused refresh, made-up tokens too,
    // so it must read an index, on a schema migrated from 9 as on a new one. @see RFC 9700 §4.14.2
    it("finds a session by the token it was rotated from, sessions written before it included, by its index", async () => {
      await schemaAt(pool(), schema, 9);
      await pool().query(`
        INSERT INTO sessions (token_hash, app_id, account_id, expires_at, rotated_from)
        SELECT 'token_' || n, 'alpha', 'acc_' || n, 2000, CASE WHEN n % 2 = 1 THEN 'was_' || n END
        FROM generate_series(1, 50000) AS n`);

      expect(await migratePostgres(pool(), schema)).toEqual(versionsAfter(9));

      const accounts = createPostgresAccountDirectory(pool());
      expect(await accounts.findSessionRotatedFrom("alpha", "was_7", 1000)).toMatchObject({
        tokenHash: "token_7",
        accountId: "acc_7",
      });
      expect(await accounts.findSessionRotatedFrom("alpha", "was_8", 1000)).toBeNull();
      await pool().query("ANALYZE sessions");
      const plan = await genericPlan(pool(), SESSION_ROTATED_FROM_SQL, "('alpha', 'was_7', 1000)");
      expect(plan).toMatch(/Index Scan using sessions_rotated_from/);
      expect(plan).not.toContain("Seq Scan");
    });
  });

  describe("postgres migration 11", () => {
    const { schema, pool } = poolOnOwnSchema(url, "pgmig");

    // Regression: only the token the last rotation replaced led to the live session, so a thief
    // who refreshed twice kept it. A chain is looked up for every refused refresh token that names
    // one, made-up ones too, so it must read an index. @see RFC 9700 §4.14.2
    it("finds a session by its chain, by its index, and leaves sessions written before it chainless", async () => {
      await schemaAt(pool(), schema, 10);
      await pool().query(`
        INSERT INTO sessions (token_hash, app_id, account_id, expires_at)
        SELECT 'token_' || n, 'alpha', 'acc_' || n, 2000 FROM generate_series(1, 50000) AS n`);

      expect(await migratePostgres(pool(), schema)).toEqual(versionsAfter(10));

      const accounts = createPostgresAccountDirectory(pool());
      expect(await accounts.findSession("alpha", "token_7", 1000)).not.toHaveProperty("chain");
      const next = { tokenHash: "next_7", expiresAtMs: 3000, chain: "c7" };
      await accounts.rotateSession("alpha", "token_7", next, 1000);
      expect(await accounts.findSessionOfChain("alpha", "c7", 1000)).toMatchObject({
        tokenHash: "next_7",
        accountId: "acc_7",
      });
      await pool().query("UPDATE sessions SET chain = 'c' || account_id WHERE account_id LIKE '%0'");
      await pool().query("ANALYZE sessions");
      const plan = await genericPlan(pool(), SESSION_OF_CHAIN_SQL, "('alpha', 'c7', 1000)");
      expect(plan).toMatch(/Index Scan using sessions_chain/);
      expect(plan).not.toContain("Seq Scan");
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

const silent = { debug() {}, info() {}, warn() {}, error() {} };

/**
 * A cluster at the current schema that an older process still writes to (a rolling deploy), its
 * server restarted as `serve` starts it: migrating first, or told not to (VERIFYD_MIGRATE_ON_START).
 */
async function clusterWithOlderServer(
  databaseUrl: string,
  redisUrl: string,
  migrateOnRestart: boolean,
): Promise<OlderServerFixture> {
  const databaseSchema = uniqueName("pgkeys");
  const redisPrefix = `${uniqueName("redis")}:`;
  let settled: { keyed: number; released: number } | undefined;
  const logger = {
    ...silent,
    info(fields: object) {
      if ("keyed" in fields) settled = fields as typeof settled;
    },
  };
  const start = (migrate: boolean) =>
    createClusterBackend({
      redisUrl,
      databaseUrl,
      poolSize: 4,
      redisPrefix,
      databaseSchema,
      migrate,
      logger,
    });
  let backend = await start(true);
  // The older process's own connection, with its statements.
  const older = createPostgresPool({ url: databaseUrl, poolSize: 1, schema: databaseSchema, logger: silent });
  return {
    accounts: () => backend.accounts,
    async insertAsOlderServer(account) {
      await older.query(
        `INSERT INTO accounts (id, app_id, email, phone, username, password_hash, profile, deletion_requested_at,
          created_at, credential_version)
        VALUES ($1, $2, $3, NULL, NULL, NULL, '{}', NULL, $4, 0)`,
        [account.id, account.appId, account.email, account.createdAtMs],
      );
    },
    async changeEmailAsOlderServer(appId, id, email) {
      await older.query("UPDATE accounts SET email = $3 WHERE app_id = $1 AND id = $2", [appId, id, email]);
    },
    async restart() {
      await backend.close();
      settled = undefined;
      backend = await start(migrateOnRestart);
      return settled;
    },
    async close() {
      await backend.close();
      await older.end();
      await Promise.all([dropSchema(databaseUrl, databaseSchema), deleteRedisPrefix(redisUrl, redisPrefix)]);
    },
  };
}

const redisProbe = await probeRedis();
if (!probe.ok || !redisProbe.ok) {
  backendMissing("postgres migration 9", missingReason(probe, redisProbe));
} else {
  const url = probe.url;
  const redisUrl = redisProbe.url;
  describe("postgres migration 9", () => {
    olderServerAccountsContract("cluster, migrating at start", () =>
      clusterWithOlderServer(url, redisUrl, true),
    );
    olderServerAccountsContract("cluster, told not to migrate", () =>
      clusterWithOlderServer(url, redisUrl, false),
    );

    it("keys an older process's accounts once when processes start together", async () => {
      const databaseSchema = uniqueName("pgkeys");
      const redisPrefix = `${uniqueName("redis")}:`;
      const logged: object[] = [];
      const logger = {
        ...silent,
        info(fields: object) {
          if ("keyed" in fields) logged.push(fields);
        },
      };
      const start = () =>
        createClusterBackend({
          redisUrl,
          databaseUrl: url,
          poolSize: 4,
          redisPrefix,
          databaseSchema,
          logger,
        });
      const first = await start();
      const backends = [first];
      const older = createPostgresPool({ url, poolSize: 1, schema: databaseSchema, logger: silent });
      try {
        for (const each of ACCOUNTS_BEFORE_MAILBOX_KEYS) {
          await older.query(
            "INSERT INTO accounts (id, app_id, email, profile, created_at) VALUES ($1, $2, $3, '{}', $4)",
            [each.id, each.appId, each.email, each.createdAtMs],
          );
        }
        backends.push(...(await Promise.all([start(), start(), start()])));

        expect(logged).toEqual([{ keyed: 5, released: 0 }]);
        await expectAccountsKeyedByMailbox(first.accounts);
      } finally {
        await Promise.all(backends.map((backend) => backend.close()));
        await older.end();
        await Promise.all([dropSchema(url, databaseSchema), deleteRedisPrefix(redisUrl, redisPrefix)]);
      }
    });

    const { schema, pool } = poolOnOwnSchema(url, "pgplan");
    it("lets a start read only the accounts whose key is not their address's, by the index it adds", async () => {
      await migratePostgres(pool(), schema);
      await pool().query(`
        INSERT INTO accounts (id, app_id, email, email_key, profile, created_at)
        SELECT 'acc_' || n, 'alpha', 'user' || n || '@example.com', 'user' || n || '@example.com', '{}', n
        FROM generate_series(1, 50000) AS n`);
      await pool().query(
        "INSERT INTO accounts (id, app_id, email, profile, created_at) VALUES ('acc_older', 'alpha', 'Ann@example.com', '{}', 0)",
      );
      await pool().query("ANALYZE accounts");
      const client = await pool().connect();
      try {
        await client.query("BEGIN");
        await client.query(SETTLE_EMAIL_KEYS_SQL.byIndex);
        for (const sql of [SETTLE_EMAIL_KEYS_SQL.releaseStale, SETTLE_EMAIL_KEYS_SQL.keyUnkeyed]) {
          const { rows } = await client.query<{ "QUERY PLAN": string }>(`EXPLAIN ${sql}`);
          const plan = rows.map((row) => row["QUERY PLAN"]).join("\n");
          expect(plan).toContain("Index Scan using accounts_email_key_unsettled");
          expect(plan).not.toContain("Seq Scan");
        }
      } finally {
        await client.query("ROLLBACK");
        client.release();
      }
    });
  });
}
