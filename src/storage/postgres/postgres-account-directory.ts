import type pg from "pg";
import { OtpError } from "../../core/errors.js";
import type { AccountChanges, AccountDirectory, Session } from "../../core/ports.js";
import type { Account } from "../../core/types.js";
import { type SessionRow, sessionFromRow } from "../rows.js";
import { columnList } from "./postgres-columns.js";
import { isUniqueViolation } from "./postgres-pool.js";

interface AccountRow {
  id: string;
  app_id: string;
  email: string | null;
  phone: string | null;
  username: string | null;
  password_hash: string | null;
  profile: Record<string, string>;
  created_at: number;
  deletion_requested_at: number | null;
  credential_version: number;
}

// The columns the statements read, never `*`, so that a migration adding one is harmless to the
// servers already running (postgres-columns.ts).
const ACCOUNT_COLUMNS = columnList<AccountRow>({
  id: true,
  app_id: true,
  email: true,
  phone: true,
  username: true,
  password_hash: true,
  profile: true,
  created_at: true,
  deletion_requested_at: true,
  credential_version: true,
});
const SESSION_COLUMNS = columnList<SessionRow>({
  token_hash: true,
  app_id: true,
  account_id: true,
  expires_at: true,
  credential_version: true,
  chain: true,
});

/**
 * The live session rotated from a token hash, by migration 10's partial index (exported for the
 * plan's test): `rotated_from = $2` implies its `rotated_from IS NOT NULL`.
 */
export const SESSION_ROTATED_FROM_SQL = `SELECT ${SESSION_COLUMNS} FROM sessions WHERE app_id = $1 AND rotated_from = $2 AND expires_at > $3`;

/** The live session of a chain, by migration 11's partial index (exported for the plan's test). */
export const SESSION_OF_CHAIN_SQL = `SELECT ${SESSION_COLUMNS} FROM sessions WHERE app_id = $1 AND chain = $2 AND expires_at > $3`;

const STATEMENTS = {
  // One account per mailbox whatever the ASCII case of its address (migration 7): found by the
  // folded key, or by the exact spelling, which wins, for a second account an earlier version let
  // in beside the first (it has no key). Each branch is served by its own unique index.
  byEmail: `
    SELECT ${ACCOUNT_COLUMNS} FROM accounts
    WHERE app_id = $1 AND (email = $2 OR email_key = lower($2::text COLLATE "C"))
    ORDER BY (email = $2) DESC
    LIMIT 1`,
  byPhone: `SELECT ${ACCOUNT_COLUMNS} FROM accounts WHERE app_id = $1 AND phone = $2`,
  byId: `SELECT ${ACCOUNT_COLUMNS} FROM accounts WHERE app_id = $1 AND id = $2`,
  byUsername: `SELECT ${ACCOUNT_COLUMNS} FROM accounts WHERE app_id = $1 AND username = $2`,
  insert: `
    INSERT INTO accounts (id, app_id, email, email_key, phone, username, password_hash, profile,
      deletion_requested_at, created_at, credential_version)
    VALUES ($1, $2, $3, lower($3::text COLLATE "C"), $4, $5, $6, $7, $8, $9, $10)`,
  // Each column is written only when its flag is set: edits made from one read do not undo each other.
  // A new password ($9) moves the credential version on and, in the same statement, ends the
  // account's sessions but the kept ($14), which move to the new version: a kept token, or one a
  // refresh rotated from a kept token (rotateSession). A refresh under way meets this statement
  // on the session's row lock, and the rotated row is matched by `rotated_from` when it is
  // re-read. $13: the version the write requires, or null.
  update: `
    WITH updated AS (
      UPDATE accounts SET
        email = CASE WHEN $3 THEN $4 ELSE email END,
        email_key = CASE WHEN $3 THEN lower($4::text COLLATE "C") ELSE email_key END,
        phone = CASE WHEN $5 THEN $6 ELSE phone END,
        username = CASE WHEN $7 THEN $8 ELSE username END,
        password_hash = CASE WHEN $9 THEN $10 ELSE password_hash END,
        credential_version = credential_version + CASE WHEN $9 THEN 1 ELSE 0 END,
        deletion_requested_at = CASE WHEN $11 THEN $12::bigint ELSE deletion_requested_at END
      WHERE id = $1 AND app_id = $2 AND ($13::integer IS NULL OR credential_version = $13)
      RETURNING ${ACCOUNT_COLUMNS}
    ),
    ended AS (
      DELETE FROM sessions USING updated
      WHERE $9 AND sessions.app_id = updated.app_id AND sessions.account_id = updated.id
        AND NOT (sessions.token_hash = ANY($14) OR COALESCE(sessions.rotated_from = ANY($14), false))
    ),
    kept AS (
      UPDATE sessions SET credential_version = updated.credential_version FROM updated
      WHERE $9 AND sessions.app_id = updated.app_id AND sessions.account_id = updated.id
        AND (sessions.token_hash = ANY($14) OR COALESCE(sessions.rotated_from = ANY($14), false))
    )
    SELECT ${ACCOUNT_COLUMNS} FROM updated`,
  // The same password under a new hash: the version and the sessions stay as they are.
  replacePasswordHash: `
    UPDATE accounts SET password_hash = $4
    WHERE app_id = $1 AND id = $2 AND password_hash = $3`,
  insertSession: `
    INSERT INTO sessions (token_hash, app_id, account_id, expires_at, credential_version, chain)
    VALUES ($1, $2, $3, $4, $5, $6)`,
  findSession: `SELECT ${SESSION_COLUMNS} FROM sessions WHERE token_hash = $1 AND app_id = $2 AND expires_at > $3`,
  // By the account's index, which every session is in (migration 10's holds the rotated only). A
  // refresh under way holds the row's lock, so this waits for it and then matches the rotated row.
  deleteSession: `
    DELETE FROM sessions
    WHERE app_id = $1 AND account_id = $2 AND (token_hash = $3 OR rotated_from = $3)`,
  deleteAccount: `
    WITH ended AS (DELETE FROM sessions WHERE app_id = $1 AND account_id = $2)
    DELETE FROM accounts WHERE app_id = $1 AND id = $2`,
  // In place, so the session keeps its row (and its lock) across the rotation.
  rotateSession: `
    UPDATE sessions SET token_hash = $4, rotated_from = token_hash, expires_at = $5, chain = $6
    WHERE token_hash = $1 AND app_id = $2 AND expires_at > $3
    RETURNING ${SESSION_COLUMNS}`,
  sessionRotatedFrom: SESSION_ROTATED_FROM_SQL,
  sessionOfChain: SESSION_OF_CHAIN_SQL,
};

// An address's mailbox key as migration 7 computes it, and the predicate of migration 9's index
// over the accounts whose key is not it, which the start's statements repeat so the planner can
// prove that index serves them.
const MAILBOX_KEY = `lower(
  (split_part(email, '@', 1) || '@' || rtrim(translate(split_part(email, '@', 2), '。．｡', '...'), '.'))
  COLLATE "C"
)`;
const KEY_UNSETTLED = `email_key IS DISTINCT FROM ${MAILBOX_KEY}`;

/** What a start's `settleEmailKeys` runs, in order, in one transaction (exported for the plan's test). */
export const SETTLE_EMAIL_KEYS_SQL = {
  // Starting processes settle one at a time: two updating the same rows in different orders
  // could deadlock, and one of them fail to start.
  lock: "SELECT pg_advisory_xact_lock(hashtext('verifyd settle email keys ' || current_schema()))",
  // The planner takes a column compared with an expression of another to differ on almost every
  // row, so it would read the whole table; the index holds exactly the rows that do.
  byIndex: "SET LOCAL enable_seqscan = off",
  // A key an older process left behind when it moved the account to another address: the mailbox
  // it names is no longer the account's, and it would refuse that mailbox a sign-up.
  releaseStale: `UPDATE accounts SET email_key = NULL WHERE ${KEY_UNSETTLED} AND email_key IS NOT NULL`,
  // As migration 7, limited to the rows without a key: the oldest of each mailbox gets its key
  // when no account holds it yet; the others keep none and are found by their exact spelling.
  keyUnkeyed: `
    UPDATE accounts SET email_key = unkeyed.mailbox_key
    FROM (
      SELECT id, app_id, ${MAILBOX_KEY} AS mailbox_key,
        row_number() OVER (PARTITION BY app_id, ${MAILBOX_KEY} ORDER BY created_at, id COLLATE "C") AS age
      FROM accounts WHERE ${KEY_UNSETTLED} AND email_key IS NULL
    ) AS unkeyed
    WHERE accounts.id = unkeyed.id AND accounts.email_key IS NULL AND unkeyed.age = 1
      AND NOT EXISTS (
        SELECT 1 FROM accounts AS holder
        WHERE holder.app_id = unkeyed.app_id AND holder.email_key = unkeyed.mailbox_key
      )`,
};

// A sign-up or an address change committing the same mailbox's key between this transaction's
// read and its write refuses the write; the next attempt reads that key as taken.
const SETTLE_ATTEMPTS = 3;

/**
 * Keys the accounts an older process wrote after migration 7 (a rolling deploy runs `verifyd
 * migrate` while older processes still serve): it inserted them without email_key, so a look-up
 * in another case missed them and a sign-up made a second account for their mailbox; and it
 * moved an address without its key. Run at every server start; returns how many keys it gave and
 * how many stale ones it took back.
 */
export async function settleEmailKeys(pool: pg.Pool): Promise<{ keyed: number; released: number }> {
  for (let attempt = 1; ; attempt++) {
    const client = await pool.connect();
    try {
      await client.query("BEGIN");
      await client.query(SETTLE_EMAIL_KEYS_SQL.lock);
      await client.query(SETTLE_EMAIL_KEYS_SQL.byIndex);
      const released = (await client.query(SETTLE_EMAIL_KEYS_SQL.releaseStale)).rowCount ?? 0;
      const keyed = (await client.query(SETTLE_EMAIL_KEYS_SQL.keyUnkeyed)).rowCount ?? 0;
      await client.query("COMMIT");
      return { keyed, released };
    } catch (error) {
      await client.query("ROLLBACK").catch(() => {});
      if (!isUniqueViolation(error) || attempt === SETTLE_ATTEMPTS) throw error;
    } finally {
      client.release();
    }
  }
}

function rowToAccount(row: AccountRow | undefined): Account | null {
  if (!row) return null;
  return {
    id: row.id,
    appId: row.app_id,
    ...(row.email ? { email: row.email } : {}),
    ...(row.phone ? { phone: row.phone } : {}),
    ...(row.username ? { username: row.username } : {}),
    ...(row.password_hash ? { passwordHash: row.password_hash } : {}),
    profile: row.profile,
    createdAtMs: row.created_at,
    ...(row.deletion_requested_at === null ? {} : { deletionRequestedAtMs: row.deletion_requested_at }),
    credentialVersion: row.credential_version,
  };
}

/** An update's values ($3 to $12), each after a flag saying whether to write it. */
function changeParams(changes: AccountChanges): unknown[] {
  return [
    changes.email,
    changes.phone,
    changes.username,
    changes.passwordHash,
    changes.deletionRequestedAtMs,
  ].flatMap((value) => [value !== undefined, value ?? null]);
}

/**
 * Accounts and sessions in PostgreSQL. Uniqueness of email (whatever its ASCII case), phone and
 * username per app is the database's (partial unique indexes), so two processes creating the same
 * account race safely: the loser gets ACCOUNT_EXISTS, whichever index refused it.
 */
export function createPostgresAccountDirectory(pool: pg.Pool): AccountDirectory {
  const run = <Row extends pg.QueryResultRow>(name: keyof typeof STATEMENTS, values: unknown[]) =>
    pool.query<Row>({ name: `vd_accounts_${name}`, text: STATEMENTS[name], values });
  const find = async (name: keyof typeof STATEMENTS, values: unknown[]) =>
    rowToAccount((await run<AccountRow>(name, values)).rows[0]);
  const params = (account: Account) => [
    account.id,
    account.appId,
    account.email ?? null,
    account.phone ?? null,
    account.username ?? null,
    account.passwordHash ?? null,
    JSON.stringify(account.profile),
    account.deletionRequestedAtMs ?? null,
  ];
  const write = async <T>(apply: () => Promise<T>): Promise<T> => {
    try {
      return await apply();
    } catch (error) {
      if (isUniqueViolation(error)) throw new OtpError("ACCOUNT_EXISTS", { cause: error });
      throw error;
    }
  };
  return {
    findByContact: (appId, channel, address) =>
      find(channel === "email" ? "byEmail" : "byPhone", [appId, address]),
    findById: (appId, id) => find("byId", [appId, id]),
    findByUsername: (appId, username) => find("byUsername", [appId, username]),
    async create(account) {
      await write(() => run("insert", [...params(account), account.createdAtMs, account.credentialVersion]));
      return account;
    },
    async delete(appId, id) {
      await run("deleteAccount", [appId, id]);
    },
    async update(appId, id, changes, options = {}) {
      const values = [
        id,
        appId,
        ...changeParams(changes),
        options.ifCredentialVersion ?? null,
        options.keepSessions ?? [],
      ];
      const { rows } = await write(() => run<AccountRow>("update", values));
      return rowToAccount(rows[0]);
    },
    async replacePasswordHash(appId, accountId, fromHash, toHash) {
      const { rowCount } = await run("replacePasswordHash", [appId, accountId, fromHash, toHash]);
      return rowCount === 1;
    },
    async createSession(session) {
      await run("insertSession", [
        session.tokenHash,
        session.appId,
        session.accountId,
        session.expiresAtMs,
        session.credentialVersion,
        session.chain ?? null,
      ]);
    },
    async findSession(appId, tokenHash, nowMs): Promise<Session | null> {
      const { rows } = await run<SessionRow>("findSession", [tokenHash, appId, nowMs]);
      return sessionFromRow(rows[0]);
    },
    async deleteSession(appId, accountId, tokenHash) {
      await run("deleteSession", [appId, accountId, tokenHash]);
    },
    async rotateSession(appId, tokenHash, next, nowMs) {
      const { rows } = await run<SessionRow>("rotateSession", [
        tokenHash,
        appId,
        nowMs,
        next.tokenHash,
        next.expiresAtMs,
        next.chain ?? null,
      ]);
      return sessionFromRow(rows[0]);
    },
    async findSessionRotatedFrom(appId, tokenHash, nowMs) {
      const { rows } = await run<SessionRow>("sessionRotatedFrom", [appId, tokenHash, nowMs]);
      return sessionFromRow(rows[0]);
    },
    async findSessionOfChain(appId, chain, nowMs) {
      const { rows } = await run<SessionRow>("sessionOfChain", [appId, chain, nowMs]);
      return sessionFromRow(rows[0]);
    },
  };
}
