import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { backendMissing, dropSchema, probePostgres, uniqueName } from "../../../test/cluster/backends.js";
import type { AccountDirectory, DevInbox, SendLog } from "../../core/ports.js";
import { createPostgresAccountDirectory } from "./postgres-account-directory.js";
import { createPostgresDevInbox } from "./postgres-dev-inbox.js";
import { migratePostgres } from "./postgres-migrator.js";
import { createPostgresPool } from "./postgres-pool.js";
import { createPostgresSendLog } from "./postgres-send-log.js";

const silent = { debug() {}, info() {}, warn() {}, error() {} };
const postgres = await probePostgres();

// Regression: the named statements read `SELECT *` / `RETURNING *`, so a migration adding a
// column to a table they read changed their result type under the servers already running: each
// pooled connection failed its next call of each ("cached plan must not change result type"), a
// handful of 503s per endpoint in the second after `alter table sessions add column`.
// @see fix-stores review 2
if (!postgres.ok) {
  backendMissing("postgres named statements across an additive migration", postgres.reason);
} else {
  describe("postgres named statements across an additive migration", () => {
    const schema = uniqueName("columns");
    let pool: pg.Pool;
    let accounts: AccountDirectory;
    let devInbox: DevInbox;
    let sendLog: SendLog & { close(): Promise<void> };
    const now = Date.now();

    beforeAll(async () => {
      // One connection: every statement is prepared on the connection the second calls use.
      pool = createPostgresPool({ url: postgres.url, poolSize: 1, schema, logger: silent });
      await migratePostgres(pool, schema);
      accounts = createPostgresAccountDirectory(pool);
      devInbox = createPostgresDevInbox(pool);
      sendLog = createPostgresSendLog(pool, silent);
      await accounts.create({
        id: "ann",
        appId: "app",
        email: "ann@example.com",
        phone: "+8613800138000",
        username: "ann",
        profile: {},
        createdAtMs: now,
        credentialVersion: 0,
      });
      await accounts.createSession({
        tokenHash: "first",
        appId: "app",
        accountId: "ann",
        expiresAtMs: now + 60_000,
        credentialVersion: 0,
        chain: "chain-first",
      });
      await devInbox.add({
        id: "msg_1",
        appId: "app",
        channel: "email",
        to: "ann@example.com",
        subject: "Your code",
        text: "123456",
        code: "123456",
        createdAtMs: now,
      });
      sendLog.record({ atMs: now, appId: "app", face: "native", decision: "accepted" });
    });
    afterAll(async () => {
      await sendLog?.close();
      await pool?.end();
      await dropSchema(postgres.url, schema);
    });

    let round = 0;
    /** Each named statement that reads rows, as a call that may be repeated. */
    const calls: Record<string, () => Promise<unknown>> = {
      findById: () => accounts.findById("app", "ann"),
      findByEmail: () => accounts.findByContact("app", "email", "ann@example.com"),
      findByPhone: () => accounts.findByContact("app", "sms", "+8613800138000"),
      findByUsername: () => accounts.findByUsername("app", "ann"),
      update: () => accounts.update("app", "ann", { username: "ann" }),
      findSession: () => accounts.findSession("app", "first", now),
      async rotateSession() {
        round += 1;
        await accounts.createSession({
          tokenHash: `rotated-${round}`,
          appId: "app",
          accountId: "ann",
          expiresAtMs: now + 60_000,
          credentialVersion: 0,
        });
        const next = { tokenHash: `rotated-${round}-2`, expiresAtMs: now + 90_000 };
        expect(await accounts.rotateSession("app", `rotated-${round}`, next, now)).toMatchObject(next);
      },
      findSessionRotatedFrom: () => accounts.findSessionRotatedFrom("app", "rotated-1", now),
      findSessionOfChain: () => accounts.findSessionOfChain("app", "chain-first", now),
      devInboxList: () => devInbox.list("ann@example.com", 10),
      sendLogQuery: () => sendLog.query({ appId: "app", limit: 10 }),
    };

    // A call that fails makes the pool discard its connection, and the next connection prepares
    // anew: so each statement is prepared, then meets a migration of its own, on the pool's one
    // connection.
    it.each(Object.keys(calls))(
      "serves %s's next call after a migration adds a column to the tables it reads",
      async (name) => {
        const call = calls[name] as () => Promise<unknown>;
        const before = await call();
        for (const table of ["accounts", "sessions", "dev_inbox", "send_log"])
          await pool.query(`ALTER TABLE ${table} ADD COLUMN probe_${name.toLowerCase()} integer`);
        expect(await call()).toEqual(before);
      },
    );
  });
}
