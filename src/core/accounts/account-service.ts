import { OtpError } from "../errors.js";
import { newId, newSecretToken, sha256Hex } from "../ids.js";
import type { AccountChanges, AccountDirectory, Clock, CounterStore } from "../ports.js";
import type { Account, App, Channel } from "../types.js";
import { hashPassword, verifyPassword } from "./passwords.js";

/** Failed password logins per account and window before it locks (Fresns: 5 per hour). */
export const LOGIN_FAILURE_LIMIT = 5;
export const LOGIN_FAILURE_WINDOW_SECONDS = 3600;

export interface AccountServiceDeps {
  accounts: AccountDirectory;
  counters: CounterStore;
  clock: Clock;
}

export interface NewAccountInput {
  app: App;
  email?: string | undefined;
  phone?: string | undefined;
  username?: string | undefined;
  /** plaintext; stored as an scrypt hash */
  password?: string | undefined;
  profile?: Record<string, string>;
}

export interface IssuedSession {
  token: string;
  expiresAtMs: number;
}

/**
 * Accounts and sessions for the faces that sign people up and in (Fresns, CloudBase, IDaaS).
 * Signing up and signing in with a code go through `sign-up.ts`, which proves the contact first;
 * these are the account steps themselves.
 */
export function createAccountService(deps: AccountServiceDeps) {
  const { accounts, counters, clock } = deps;
  const lockKey = (accountId: string) => `login-failures:${accountId}`;
  const saved = async (account: Account, changes: AccountChanges): Promise<Account> => {
    const stored = await accounts.update(account.appId, account.id, changes);
    if (!stored) throw new OtpError("ACCOUNT_NOT_FOUND");
    return stored;
  };

  return {
    findByContact: (app: App, channel: Channel, address: string) =>
      accounts.findByContact(app.id, channel, address),
    findById: (app: App, id: string) => accounts.findById(app.id, id),
    findByUsername: (app: App, username: string) => accounts.findByUsername(app.id, username),

    /** Creates an account; ACCOUNT_EXISTS when its email, phone or username is taken. */
    async create(input: NewAccountInput): Promise<Account> {
      const account: Account = {
        id: newId("acc"),
        appId: input.app.id,
        ...(input.email ? { email: input.email } : {}),
        ...(input.phone ? { phone: input.phone } : {}),
        ...(input.username ? { username: input.username } : {}),
        ...(input.password ? { passwordHash: await hashPassword(input.password) } : {}),
        profile: input.profile ?? {},
        createdAtMs: clock.nowMs(),
      };
      return accounts.create(account);
    },

    /**
     * Saves the fields given and only those, so that edits made at once from one read all stand.
     * A new password is hashed, lifts the login lockout (whoever set it proved more than a
     * password would) and ends the account's sessions but `keepSessions` (session ids: the
     * caller's own), so a thief's logins end with it. ACCOUNT_EXISTS when a new contact is taken;
     * ACCOUNT_NOT_FOUND when the account has gone.
     */
    async update(
      account: Account,
      changes: Pick<AccountChanges, "email" | "phone" | "username"> & { password?: string },
      options: { keepSessions?: string[] } = {},
    ): Promise<Account> {
      const { password, ...fields } = changes;
      const stored = await saved(account, {
        ...fields,
        ...(password === undefined ? {} : { passwordHash: await hashPassword(password) }),
      });
      if (password !== undefined) {
        await counters.reset(account.appId, lockKey(account.id));
        await accounts.endSessions(account.appId, account.id, options.keepSessions ?? []);
      }
      return stored;
    },

    /** Marks the account as waiting for deletion; a request already made keeps its time. */
    async requestDeletion(account: Account): Promise<Account> {
      if (account.deletionRequestedAtMs !== undefined) return account;
      return saved(account, { deletionRequestedAtMs: clock.nowMs() });
    },

    /** Withdraws a deletion request (Fresns recall-delete). */
    async recallDeletion(account: Account): Promise<Account> {
      if (account.deletionRequestedAtMs === undefined) return account;
      return saved(account, { deletionRequestedAtMs: null });
    },

    /**
     * Checks a password with a lockout: after LOGIN_FAILURE_LIMIT failures in the window the
     * account refuses even the right password until the window ends (ACCOUNT_LOCKED). The attempt
     * is counted before the hash is compared, as a code's is: guesses sent at once each take a
     * place in the count, so no more than the limit are ever compared.
     */
    async verifyPasswordLogin(app: App, account: Account, password: string): Promise<void> {
      const now = clock.nowMs();
      const attempts = await counters.hit(app.id, lockKey(account.id), LOGIN_FAILURE_WINDOW_SECONDS, now);
      if (attempts.count > LOGIN_FAILURE_LIMIT) {
        throw new OtpError("ACCOUNT_LOCKED", {
          details: { retryAfterSeconds: Math.max(1, Math.ceil((attempts.resetAtMs - now) / 1000)) },
        });
      }
      const ok = account.passwordHash !== undefined && (await verifyPassword(password, account.passwordHash));
      if (!ok) throw new OtpError("PASSWORD_INVALID", { details: { field: "password" } });
      await counters.reset(app.id, lockKey(account.id));
    },

    /** Counts a failed code login towards the same lockout as passwords. */
    async recordLoginFailure(app: App, account: Account): Promise<void> {
      await counters.hit(app.id, lockKey(account.id), LOGIN_FAILURE_WINDOW_SECONDS, clock.nowMs());
    },

    async isLocked(app: App, account: Account): Promise<number | null> {
      const now = clock.nowMs();
      const failures = await counters.peek(app.id, lockKey(account.id), now);
      return failures.count >= LOGIN_FAILURE_LIMIT
        ? Math.max(1, Math.ceil((failures.resetAtMs - now) / 1000))
        : null;
    },

    /** A new opaque session token (stored hashed). */
    async createSession(
      app: App,
      account: Account,
      ttlSeconds: number,
      prefix = "sess",
    ): Promise<IssuedSession> {
      const token = newSecretToken(prefix);
      const expiresAtMs = clock.nowMs() + ttlSeconds * 1000;
      await accounts.createSession({
        tokenHash: sha256Hex(token),
        appId: app.id,
        accountId: account.id,
        expiresAtMs,
      });
      return { token, expiresAtMs };
    },

    /** The account a live session token belongs to, or null. */
    async resolveSession(app: App, token: string): Promise<Account | null> {
      const session = await accounts.findSession(app.id, sha256Hex(token), clock.nowMs());
      return session ? accounts.findById(app.id, session.accountId) : null;
    },

    revokeSession: (app: App, token: string) => accounts.deleteSession(app.id, sha256Hex(token)),
  };
}

export type AccountService = ReturnType<typeof createAccountService>;
