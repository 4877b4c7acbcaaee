import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { describe, expect, it } from "vitest";
import { databaseAt } from "../../../../test/fakes/sqlite-at-version.js";
import { newApp } from "../../../core/apps/apps.js";
import { createGroupCommit } from "../../sqlite/group-commit.js";
import { createSqliteBackend } from "../../sqlite/index.js";
import {
  createSqliteAccountDirectory,
  SESSION_OF_CHAIN_SQL,
  SESSION_ROTATED_FROM_SQL,
  SETTLE_EMAIL_KEYS_SQL,
  settleEmailKeys,
} from "../../sqlite/sqlite-account-directory.js";
import { createSqliteAppStore } from "../../sqlite/sqlite-app-store.js";
import { migrateSqlite } from "../../sqlite/sqlite-database.js";
import {
  ACCOUNTS_BEFORE_MAILBOX_KEYS,
  expectAccountsKeyedByMailbox,
  type OlderServerFixture,
  olderServerAccountsContract,
} from "../mailbox-keys.contract.js";
import { SQLITE_MIGRATIONS } from "./index.js";

/** The versions a database at `version` has still to apply: `version` + 1 and every one after. */
const versionsAfter = (version: number) =>
  SQLITE_MIGRATIONS.map((migration) => migration.version).filter((each) => each > version);

/** The steps of the plan SQLite makes for `sql` with `params`, one a line. */
function planOf(db: Database.Database, sql: string, params: Record<string, unknown>): string {
  const steps = db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(params) as { detail: string }[];
  return steps.map((step) => step.detail.trim()).join("\n");
}

describe("SQLite migration 10", () => {
  // Regression: a key saved for a second app moved to it, and the first app's document kept
  // listing it; with saves refusing such a key, that app could not be saved again. @see core review 3
  it("keeps in each app's document only the API keys that reach it, so every app can be saved again", async () => {
    const db = databaseAt(9);
    // What the old INSERT OR REPLACE left: "shared" moved to beta; "dropped" left beta later.
    const alpha = newApp({ id: "alpha", name: "Alpha", apiKeyHashes: ["own", "shared", "dropped"] });
    const beta = newApp({ id: "beta", apiKeyHashes: ["shared"] });
    const insertApp = db.prepare("INSERT INTO apps (id, client_id, data) VALUES (?, ?, ?)");
    for (const app of [alpha, beta]) insertApp.run(app.id, app.clientId, JSON.stringify(app));
    const insertKey = db.prepare("INSERT INTO app_keys (key_hash, app_id) VALUES (?, ?)");
    insertKey.run("own", "alpha");
    insertKey.run("shared", "beta");

    expect(migrateSqlite(db)).toEqual(versionsAfter(9));

    const apps = createSqliteAppStore(db);
    expect(await apps.get("alpha")).toEqual({ ...alpha, apiKeyHashes: ["own"] });
    expect(await apps.get("beta")).toEqual(beta);
    await apps.save({ ...alpha, apiKeyHashes: ["own"], disabled: true });
    expect(await apps.getByApiKeyHash("shared")).toEqual(beta);
    db.close();
  });
});

describe("SQLite migration 11", () => {
  // Regression: accounts were keyed by the email's exact spelling, so one mailbox could have two
  // accounts, and the unique index on the folded email must build over what that left. @see badinput F2
  it("keys each mailbox to its oldest account, and keeps a younger one an earlier version let in", async () => {
    const db = databaseAt(10);
    const insert = db.prepare(
      "INSERT INTO accounts (id, app_id, email, profile, created_at) VALUES (?, ?, ?, '{}', ?)",
    );
    for (const each of ACCOUNTS_BEFORE_MAILBOX_KEYS)
      insert.run(each.id, each.appId, each.email, each.createdAtMs);

    expect(migrateSqlite(db)).toEqual(versionsAfter(10));

    await expectAccountsKeyedByMailbox(createSqliteAccountDirectory(db, createGroupCommit(db)));
    db.close();
  });
});

/** A data dir at the current schema, its server restarted as a start opens it (createSqliteBackend). */
function sqliteWithOlderServer(): OlderServerFixture {
  const dir = mkdtempSync(join(tmpdir(), "verifyd-mailbox-keys-"));
  const path = join(dir, "verifyd.db");
  let settled: { keyed: number; released: number } | undefined;
  const logger = {
    debug() {},
    warn() {},
    error() {},
    info(fields: object) {
      if ("keyed" in fields) settled = fields as typeof settled;
    },
  };
  let backend = createSqliteBackend({ path, logger });
  // The older server is another process on the file: a connection of its own, with its statements.
  const older = new Database(path);
  const insert = older.prepare(`
    INSERT INTO accounts (id, app_id, email, phone, username, password_hash, profile, created_at,
      deletion_requested_at, credential_version)
    VALUES (?, ?, ?, NULL, NULL, NULL, '{}', ?, NULL, 0)`);
  const changeEmail = older.prepare("UPDATE accounts SET email = ? WHERE app_id = ? AND id = ?");
  return {
    accounts: () => backend.accounts,
    async insertAsOlderServer(account) {
      insert.run(account.id, account.appId, account.email, account.createdAtMs);
    },
    async changeEmailAsOlderServer(appId, id, email) {
      changeEmail.run(email, appId, id);
    },
    async restart() {
      await backend.close();
      settled = undefined;
      backend = createSqliteBackend({ path, logger });
      return settled;
    },
    async close() {
      older.close();
      await backend.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

describe("SQLite migration 13", () => {
  olderServerAccountsContract("sqlite", async () => sqliteWithOlderServer());

  it("lets a start read only the accounts whose key is not their address's, by the index it adds", () => {
    const db = databaseAt(SQLITE_MIGRATIONS.length);
    const insert = db.prepare(
      "INSERT INTO accounts (id, app_id, email, email_key, profile, created_at) VALUES (?, 'alpha', ?, lower(?), '{}', ?)",
    );
    db.transaction(() => {
      for (let each = 0; each < 10_000; each++)
        insert.run(`acc_${each}`, `user${each}@example.com`, `user${each}@example.com`, each);
    })();
    db.exec("ANALYZE");
    for (const sql of Object.values(SETTLE_EMAIL_KEYS_SQL)) {
      const steps = (db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all() as { detail: string }[]).map((step) =>
        step.detail.trim(),
      );
      expect(steps).toContain("SCAN accounts USING INDEX accounts_email_key_unsettled");
      expect(steps).not.toContain("SCAN accounts");
    }
    expect(settleEmailKeys(db)).toEqual({ keyed: 0, released: 0 });
    db.close();
  });
});

describe("SQLite migration 14", () => {
  // Regression: a refresh token presented again after its rotation left the session it had been
  // rotated into alive; finding that session answers every refused refresh, made-up tokens too,
  // so it must read an index, on a database migrated from 13 as on a new one. @see RFC 9700 §4.14.2
  it("finds a session by the token it was rotated from, sessions written before it included, by its index", async () => {
    const db = databaseAt(13);
    const insert = db.prepare(
      "INSERT INTO sessions (token_hash, app_id, account_id, expires_at, rotated_from) VALUES (?, 'alpha', ?, 2000, ?)",
    );
    db.transaction(() => {
      for (let each = 0; each < 10_000; each++)
        insert.run(`token_${each}`, `acc_${each}`, each % 2 ? `was_${each}` : null);
    })();

    expect(migrateSqlite(db)).toEqual(versionsAfter(13));

    const accounts = createSqliteAccountDirectory(db, createGroupCommit(db));
    expect(await accounts.findSessionRotatedFrom("alpha", "was_7", 1000)).toMatchObject({
      tokenHash: "token_7",
      accountId: "acc_7",
    });
    expect(await accounts.findSessionRotatedFrom("alpha", "was_8", 1000)).toBeNull();
    db.exec("ANALYZE");
    expect(planOf(db, SESSION_ROTATED_FROM_SQL, { appId: "alpha", tokenHash: "was_7", nowMs: 1000 })).toMatch(
      /^SEARCH sessions USING INDEX sessions_rotated_from \(app_id=\? AND rotated_from=\?\)$/,
    );
    db.close();
  });
});

describe("SQLite migration 15", () => {
  // Regression: only the token the last rotation replaced led to the live session, so a thief who
  // refreshed twice kept it. A chain is looked up for every refused refresh token that names one,
  // made-up ones too, so it must read an index. @see RFC 9700 §4.14.2
  it("finds a session by its chain, by its index, and leaves sessions written before it chainless", async () => {
    const db = databaseAt(14);
    const insert = db.prepare(
      "INSERT INTO sessions (token_hash, app_id, account_id, expires_at) VALUES (?, 'alpha', ?, 2000)",
    );
    db.transaction(() => {
      for (let each = 0; each < 10_000; each++) insert.run(`token_${each}`, `acc_${each}`);
    })();

    expect(migrateSqlite(db)).toEqual(versionsAfter(14));

    const accounts = createSqliteAccountDirectory(db, createGroupCommit(db));
    expect(await accounts.findSession("alpha", "token_7", 1000)).not.toHaveProperty("chain");
    await accounts.rotateSession(
      "alpha",
      "token_7",
      { tokenHash: "next_7", expiresAtMs: 3000, chain: "c7" },
      1000,
    );
    expect(await accounts.findSessionOfChain("alpha", "c7", 1000)).toMatchObject({
      tokenHash: "next_7",
      accountId: "acc_7",
    });
    db.exec("UPDATE sessions SET chain = 'c' || account_id WHERE account_id LIKE '%0'");
    db.exec("ANALYZE");
    expect(planOf(db, SESSION_OF_CHAIN_SQL, { appId: "alpha", chain: "c7", nowMs: 1000 })).toMatch(
      /^SEARCH sessions USING INDEX sessions_chain \(app_id=\? AND chain=\?\)$/,
    );
    db.close();
  });
});
