import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { backendMissing, dropSchema, probePostgres, uniqueName } from "../../../test/cluster/backends.js";
import type { AccountDirectory } from "../../core/ports.js";
import { createPostgresAccountDirectory } from "./postgres-account-directory.js";
import { migratePostgres } from "./postgres-migrator.js";
import { createPostgresPool } from "./postgres-pool.js";

const silent = { debug() {}, info() {}, warn() {}, error() {} };
const postgres = await probePostgres();

/**
 * A refresh and a new password meet on the session's row. The contract suite runs them one after
 * the other; here each holds the row in a transaction while the other starts, as two processes
 * may, and the kept session survives either way.
 */
if (!postgres.ok) {
  backendMissing("postgres account directory: a refresh racing a new password", postgres.reason);
} else {
  describe("postgres account directory: a refresh racing a new password", () => {
    const schema = uniqueName("rotate");
    let pool: pg.Pool;
    let other: pg.Client;
    let accounts: AccountDirectory;
    const now = Date.now();
    const live = (tokenHash: string, credentialVersion: number) => ({
      tokenHash,
      appId: "app",
      accountId: "ann",
      expiresAtMs: now + 60_000,
      credentialVersion,
    });
    const sessions = async () =>
      (await pool.query("SELECT token_hash, credential_version FROM sessions ORDER BY token_hash")).rows;
    // Lets the statement just started reach the row lock it waits on.
    const soon = () => new Promise((resolve) => setTimeout(resolve, 200));

    beforeAll(async () => {
      pool = createPostgresPool({ url: postgres.url, poolSize: 4, schema, logger: silent });
      await migratePostgres(pool, schema);
      accounts = createPostgresAccountDirectory(pool);
      await accounts.create({ id: "ann", appId: "app", profile: {}, createdAtMs: now, credentialVersion: 0 });
      other = new pg.Client({ connectionString: postgres.url, options: `-c search_path=${schema}` });
      await other.connect();
    });
    afterAll(async () => {
      await other?.end();
      await pool?.end();
      await dropSchema(postgres.url, schema);
    });

    it("keeps the session a refresh holding its row rotates while the password changes", async () => {
      await accounts.createSession(live("kept", 0));
      await accounts.createSession(live("thief", 0));
      await other.query("BEGIN");
      await other.query(
        "UPDATE sessions SET token_hash = 'kept-2', rotated_from = token_hash WHERE token_hash = 'kept'",
      );
      const change = accounts.update("app", "ann", { passwordHash: "new" }, { keepSessions: ["kept"] });
      await soon();
      await other.query("COMMIT");
      expect(await change).toMatchObject({ credentialVersion: 1 });
      expect(await sessions()).toEqual([{ token_hash: "kept-2", credential_version: 1 }]);
    });

    it("carries a new password's version on to a refresh that waited for its row", async () => {
      await other.query("BEGIN");
      await other.query("UPDATE accounts SET credential_version = 2 WHERE id = 'ann'");
      await other.query("UPDATE sessions SET credential_version = 2 WHERE token_hash = 'kept-2'");
      const refresh = accounts.rotateSession(
        "app",
        "kept-2",
        { tokenHash: "kept-3", expiresAtMs: now + 90_000 },
        now,
      );
      await soon();
      await other.query("COMMIT");
      expect(await refresh).toMatchObject({ tokenHash: "kept-3", credentialVersion: 2 });
    });
  });
}
