import { OtpError } from "../../core/errors.js";
import type { AccountChanges, AccountDirectory } from "../../core/ports.js";
import type { Account, Channel } from "../../core/types.js";
import { type SessionRow, sessionFromRow } from "../rows.js";
import type { GroupCommit } from "./group-commit.js";
import type { SqliteDatabase } from "./sqlite-database.js";

interface AccountRow {
  id: string;
  app_id: string;
  email: string | null;
  phone: string | null;
  username: string | null;
  password_hash: string | null;
  profile: string;
  created_at: number;
  deletion_requested_at: number | null;
  credential_version: number;
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
    profile: JSON.parse(row.profile) as Record<string, string>,
    createdAtMs: row.created_at,
    ...(row.deletion_requested_at === null ? {} : { deletionRequestedAtMs: row.deletion_requested_at }),
    credentialVersion: row.credential_version,
  };
}

/** An update's values, each with a flag (1/0: SQLite binds no booleans) saying whether to write it. */
function changeParams(changes: AccountChanges) {
  const given = (value: unknown) => (value === undefined ? 0 : 1);
  return {
    setEmail: given(changes.email),
    email: changes.email ?? null,
    setPhone: given(changes.phone),
    phone: changes.phone ?? null,
    setUsername: given(changes.username),
    username: changes.username ?? null,
    setPasswordHash: given(changes.passwordHash),
    passwordHash: changes.passwordHash ?? null,
    setDeletionRequestedAtMs: given(changes.deletionRequestedAtMs),
    deletionRequestedAtMs: changes.deletionRequestedAtMs ?? null,
  };
}

function isUniqueViolation(error: unknown): boolean {
  return (error as { code?: string }).code === "SQLITE_CONSTRAINT_UNIQUE";
}

// An address's mailbox key as migration 11 computes it, and the predicate of migration 13's index
// over the accounts whose key is not it: SQLite reads a partial index only for a statement that
// repeats its WHERE term as written there.
const MAILBOX_KEY = `lower(
  substr(email, 1, instr(email, '@'))
  || rtrim(replace(replace(replace(substr(email, instr(email, '@') + 1), '。', '.'), '．', '.'), '｡', '.'), '.')
)`;
const KEY_UNSETTLED = `email_key IS NOT ${MAILBOX_KEY}`;

/** What a start's `settleEmailKeys` runs, in order (exported for the plan's test). */
export const SETTLE_EMAIL_KEYS_SQL = {
  // A key an older server left behind when it moved the account to another address: the mailbox
  // it names is no longer the account's, and it would refuse that mailbox a sign-up.
  releaseStale: `UPDATE accounts SET email_key = NULL WHERE ${KEY_UNSETTLED} AND email_key IS NOT NULL`,
  // As migration 11, limited to the rows without a key: the oldest of each mailbox gets its key
  // when no account holds it yet; the others keep none and are found by their exact spelling.
  keyUnkeyed: `
    UPDATE accounts SET email_key = ${MAILBOX_KEY}
    WHERE id IN (
      SELECT id FROM (
        SELECT id, app_id, ${MAILBOX_KEY} AS mailbox_key,
          row_number() OVER (PARTITION BY app_id, ${MAILBOX_KEY} ORDER BY created_at, id) AS age
        FROM accounts WHERE ${KEY_UNSETTLED} AND email_key IS NULL
      ) AS unkeyed
      WHERE age = 1 AND NOT EXISTS (
        SELECT 1 FROM accounts AS holder
        WHERE holder.app_id = unkeyed.app_id AND holder.email_key = unkeyed.mailbox_key
      )
    )`,
};

/**
 * Keys the accounts an older server wrote after migration 11 (the normal deploy runs `verifyd
 * migrate` while the old server still serves): it inserted them without email_key, so a look-up
 * in another case missed them and a sign-up made a second account for their mailbox; and it
 * moved an address without its key. Run at every server start, in one write transaction; returns
 * how many keys it gave and how many stale ones it took back.
 */
export function settleEmailKeys(db: SqliteDatabase): { keyed: number; released: number } {
  const releaseStale = db.prepare(SETTLE_EMAIL_KEYS_SQL.releaseStale);
  const keyUnkeyed = db.prepare(SETTLE_EMAIL_KEYS_SQL.keyUnkeyed);
  // Immediate: the write lock first, so no other process's commit (the CLI's) slips between what
  // the statements read and what they write.
  return db
    .transaction(() => {
      const released = releaseStale.run().changes;
      return { released, keyed: keyUnkeyed.run().changes };
    })
    .immediate();
}

/**
 * The live session rotated from a token hash, by migration 14's index (exported for the plan's
 * test): a partial one, which SQLite reads for `rotated_from = @tokenHash`, as that implies the
 * index's `rotated_from IS NOT NULL`.
 */
export const SESSION_ROTATED_FROM_SQL = `
  SELECT * FROM sessions
  WHERE app_id = @appId AND rotated_from = @tokenHash AND expires_at > @nowMs`;

/** The live session of a chain, by migration 15's partial index (exported for the plan's test). */
export const SESSION_OF_CHAIN_SQL = `
  SELECT * FROM sessions WHERE app_id = @appId AND chain = @chain AND expires_at > @nowMs`;

/** The built-in account directory: accounts and sessions in the embedded database. */
export function createSqliteAccountDirectory(db: SqliteDatabase, group: GroupCommit): AccountDirectory {
  const statements = {
    // One account per mailbox whatever the ASCII case of its address (migration 11): found by the
    // folded key, or by the exact spelling, which wins, for a second account an earlier version
    // let in beside the first (it has no key). Each branch is served by its own unique index.
    byEmail: db.prepare(`
      SELECT * FROM accounts
      WHERE app_id = @appId AND (email = @email OR email_key = lower(@email))
      ORDER BY email = @email DESC
      LIMIT 1`),
    byPhone: db.prepare("SELECT * FROM accounts WHERE app_id = ? AND phone = ?"),
    byId: db.prepare("SELECT * FROM accounts WHERE app_id = ? AND id = ?"),
    byUsername: db.prepare("SELECT * FROM accounts WHERE app_id = ? AND username = ?"),
    insert: db.prepare(`
      INSERT INTO accounts (id, app_id, email, email_key, phone, username, password_hash, profile,
        created_at, deletion_requested_at, credential_version)
      VALUES (@id, @appId, @email, lower(@email), @phone, @username, @passwordHash, @profile,
        @createdAtMs, @deletionRequestedAtMs, @credentialVersion)`),
    // Each column is written only when its flag is set: edits made from one read do not undo each other.
    update: db.prepare(`
      UPDATE accounts SET
        email = IIF(@setEmail, @email, email),
        email_key = IIF(@setEmail, lower(@email), email_key),
        phone = IIF(@setPhone, @phone, phone),
        username = IIF(@setUsername, @username, username),
        password_hash = IIF(@setPasswordHash, @passwordHash, password_hash),
        credential_version = credential_version + @setPasswordHash,
        deletion_requested_at = IIF(@setDeletionRequestedAtMs, @deletionRequestedAtMs, deletion_requested_at)
      WHERE app_id = @appId AND id = @id AND (@ifVersion IS NULL OR credential_version = @ifVersion)
      RETURNING *`),
    replacePasswordHash: db.prepare(
      "UPDATE accounts SET password_hash = @toHash WHERE app_id = @appId AND id = @id AND password_hash = @fromHash",
    ),
    insertSession: db.prepare(
      "INSERT INTO sessions (token_hash, app_id, account_id, expires_at, credential_version, chain) VALUES (?, ?, ?, ?, ?, ?)",
    ),
    findSession: db.prepare("SELECT * FROM sessions WHERE token_hash = ? AND app_id = ? AND expires_at > ?"),
    deleteSession: db.prepare("DELETE FROM sessions WHERE token_hash = ? AND app_id = ?"),
    // By the account's index, which every session is in (migration 14's holds the rotated only).
    endSession: db.prepare(`
      DELETE FROM sessions
      WHERE app_id = @appId AND account_id = @accountId
        AND (token_hash = @tokenHash OR rotated_from = @tokenHash)`),
    rotateSession: db.prepare(`
      UPDATE sessions
      SET token_hash = @next, rotated_from = token_hash, expires_at = @expiresAtMs, chain = @chain
      WHERE token_hash = @tokenHash AND app_id = @appId AND expires_at > @nowMs
      RETURNING *`),
    sessionRotatedFrom: db.prepare(SESSION_ROTATED_FROM_SQL),
    sessionOfChain: db.prepare(SESSION_OF_CHAIN_SQL),
    deleteAccount: db.prepare("DELETE FROM accounts WHERE app_id = ? AND id = ?"),
    deleteSessionsOf: db.prepare("DELETE FROM sessions WHERE app_id = ? AND account_id = ?"),
    sessionsOf: db.prepare(
      "SELECT token_hash, rotated_from FROM sessions WHERE app_id = ? AND account_id = ?",
    ),
    restampSession: db.prepare(
      "UPDATE sessions SET credential_version = ? WHERE token_hash = ? AND app_id = ?",
    ),
  };
  const params = (account: Account) => ({
    id: account.id,
    appId: account.appId,
    email: account.email ?? null,
    phone: account.phone ?? null,
    username: account.username ?? null,
    passwordHash: account.passwordHash ?? null,
    profile: JSON.stringify(account.profile),
    createdAtMs: account.createdAtMs,
    deletionRequestedAtMs: account.deletionRequestedAtMs ?? null,
    credentialVersion: account.credentialVersion,
  });
  const write = async <T>(run: () => T): Promise<T> => {
    try {
      return await group.run(run);
    } catch (error) {
      if (isUniqueViolation(error)) throw new OtpError("ACCOUNT_EXISTS", { cause: error });
      throw error;
    }
  };
  return {
    async findByContact(appId, channel: Channel, address) {
      const row =
        channel === "email"
          ? statements.byEmail.get({ appId, email: address })
          : statements.byPhone.get(appId, address);
      return rowToAccount(row as AccountRow | undefined);
    },
    async findById(appId, id) {
      return rowToAccount(statements.byId.get(appId, id) as AccountRow | undefined);
    },
    async findByUsername(appId, username) {
      return rowToAccount(statements.byUsername.get(appId, username) as AccountRow | undefined);
    },
    async create(account) {
      await write(() => statements.insert.run(params(account)));
      return account;
    },
    async delete(appId, id) {
      await group.run(() => {
        statements.deleteSessionsOf.run(appId, id);
        statements.deleteAccount.run(appId, id);
      });
    },
    async update(appId, id, changes, options = {}) {
      const flagged = { appId, id, ifVersion: options.ifCredentialVersion ?? null, ...changeParams(changes) };
      const keep = options.keepSessions ?? [];
      const row = await write(() => {
        const updated = statements.update.get(flagged) as AccountRow | undefined;
        // A new password ends the sessions opened before it in the same transaction, but the kept
        // (and a kept one's rotation, which a refresh may have made since the caller's read).
        if (updated && changes.passwordHash !== undefined) {
          const sessions = statements.sessionsOf.all(appId, id) as {
            token_hash: string;
            rotated_from: string | null;
          }[];
          for (const { token_hash: tokenHash, rotated_from: rotatedFrom } of sessions) {
            if (keep.includes(tokenHash) || (rotatedFrom !== null && keep.includes(rotatedFrom)))
              statements.restampSession.run(updated.credential_version, tokenHash, appId);
            else statements.deleteSession.run(tokenHash, appId);
          }
        }
        return updated;
      });
      return rowToAccount(row);
    },
    async replacePasswordHash(appId, accountId, fromHash, toHash) {
      const { changes } = await group.run(() =>
        statements.replacePasswordHash.run({ appId, id: accountId, fromHash, toHash }),
      );
      return changes === 1;
    },
    async createSession(session) {
      await group.run(() =>
        statements.insertSession.run(
          session.tokenHash,
          session.appId,
          session.accountId,
          session.expiresAtMs,
          session.credentialVersion,
          session.chain ?? null,
        ),
      );
    },
    async findSession(appId, tokenHash, nowMs) {
      return sessionFromRow(statements.findSession.get(tokenHash, appId, nowMs) as SessionRow | undefined);
    },
    async deleteSession(appId, accountId, tokenHash) {
      await group.run(() => statements.endSession.run({ appId, accountId, tokenHash }));
    },
    async rotateSession(appId, tokenHash, next, nowMs) {
      const row = await group.run(
        () =>
          statements.rotateSession.get({
            next: next.tokenHash,
            expiresAtMs: next.expiresAtMs,
            chain: next.chain ?? null,
            tokenHash,
            appId,
            nowMs,
          }) as SessionRow | undefined,
      );
      return sessionFromRow(row);
    },
    async findSessionRotatedFrom(appId, tokenHash, nowMs) {
      const row = statements.sessionRotatedFrom.get({ appId, tokenHash, nowMs });
      return sessionFromRow(row as SessionRow | undefined);
    },
    async findSessionOfChain(appId, chain, nowMs) {
      const row = statements.sessionOfChain.get({ appId, chain, nowMs });
      return sessionFromRow(row as SessionRow | undefined);
    },
  };
}
