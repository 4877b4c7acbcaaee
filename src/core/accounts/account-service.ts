import { createHmac } from "node:crypto";
import { clientAddressOf } from "../abuse/abuse-rules.js";
import { isOtpError, OtpError, type OtpErrorCode } from "../errors.js";
import { newId, newSecretToken, randomBytesFromPool, sha256Hex } from "../ids.js";
import { ruleName } from "../policy.js";
import type { AccountChanges, AccountDirectory, Clock, CounterStore, Logger, Session } from "../ports.js";
import { foldedAddress } from "../recipients.js";
import { type CodeSecrets, equalInConstantTime } from "../secrets.js";
import type { Account, App, Channel } from "../types.js";
import {
  decoyCompare,
  hashPassword,
  hashRetryablePassword,
  needsRehash,
  verifyPassword,
} from "./passwords.js";
import { accountLoggedInBy, revokeSessionById } from "./session-id.js";

/**
 * What a login attempt that failed on its credentials throws: a wrong password, or a code that is
 * wrong, spent, expired or gone. Any other failure (a backend's) is given back to the lockout.
 */
const CREDENTIAL_REFUSALS = new Set<OtpErrorCode>([
  "PASSWORD_INVALID",
  "CODE_INVALID",
  "CODE_EXPIRED",
  "CODE_SUPERSEDED",
  "CODE_CANCELED",
  "CODE_ALREADY_USED",
  "TOO_MANY_ATTEMPTS",
  "VERIFICATION_NOT_FOUND",
  "TOKEN_INVALID",
]);

/** Failed password logins per account and window before it locks (Fresns: 5 per hour). */
export const LOGIN_FAILURE_LIMIT = 5;
export const LOGIN_FAILURE_WINDOW_SECONDS = 3600;

/**
 * Failed password comparisons one client (an IPv4 address, an IPv6 /64) may make in a window,
 * whatever names it tries: the lockout counts per name, so each made-up name was a fresh budget,
 * and each comparison costs 50-100 ms of a thread the whole process shares. As the look-up rule:
 * room for everyone behind one address to mistype, too little to walk a list.
 */
export const PASSWORD_FAILURES_PER_CLIENT = { limit: 20, windowSeconds: 600 };

/**
 * New passwords a session proves (CloudBase's, behind a sudo token) one account may set in a
 * window. Such a change spends no proof (a sudo token serves for its 600 s, as many times as it is
 * sent), and each hashes its password (50-100 ms of a thread the whole process shares), so one
 * account's burst of them filled the line of hashes and every login was refused as busy. Counted
 * before the hash, in the counter store, so the budget holds across a cluster's processes: room
 * for a person's retries, too little to keep scrypt busy.
 */
export const PASSWORD_CHANGES_PER_ACCOUNT = { limit: 5, windowSeconds: 600 };

/**
 * What a login names when no account answers to it: a contact, as the face parsed it (normalised,
 * `parseRecipient`), or a username.
 */
export type LoginName = { channel: Channel; address: string } | { username: string };

/**
 * The lockout key of a name no account has. Every spelling the account look-up reads as one
 * contact is one name (an email's ASCII capitals folded, `foldedAddress`): were `ANN@` and `ann@`
 * counted apart, the sixth try in another case would be locked for an account and refused as
 * wrong for none, which tells that the account exists. Hashed, so the store names no address.
 */
function unknownLoginKey(name: LoginName): string {
  const text =
    "username" in name
      ? `username:${name.username}`
      : `${name.channel}:${foldedAddress(name.channel, name.address)}`;
  return `login-failures:unknown:${sha256Hex(text)}`;
}

export interface AccountServiceDeps {
  accounts: AccountDirectory;
  counters: CounterStore;
  clock: Clock;
  logger: Logger;
  /** the server's secrets: a rotating token's chain is signed under a key derived from them */
  secrets: Pick<CodeSecrets, "allDerivedKeys">;
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
 * Which face opened a session. Each face takes only its own: the faces guard an account
 * differently (CloudBase asks for a sudo token before a new contact or password, Fresns and IDaaS
 * do not), so a session that worked everywhere would get past the strictest face through the
 * loosest. The kind is the token's prefix; the stored hash covers the whole token, so a prefix
 * changed by hand names no session.
 */
export type SessionKind = "fresns" | "idaas" | "cloudbase";

const SESSION_TOKEN_PREFIXES: Record<SessionKind, string> = {
  // Fresns's is the prefix every face used before sessions had kinds: those left from then
  // (IDaaS's, up to 5 days old) work on Fresns only, until they expire.
  fresns: "sess",
  idaas: "ids",
  // CloudBase hands out its session as a refresh token
  cloudbase: "rt",
};

/** Whether `token` is of a session `kind` opens (a cheap check before any lookup). */
export function isSessionTokenOf(kind: SessionKind, token: string): boolean {
  const prefix = SESSION_TOKEN_PREFIXES[kind];
  return token.length > prefix.length && token.startsWith(prefix) && token[prefix.length] === "_";
}

/**
 * The kinds whose token a refresh replaces. Each of their tokens names the session's chain, its
 * first login's random tag, which all of the session's tokens carry: a token presented after its
 * rotation ends the session it led to however many rotations ago it was replaced, as whoever
 * holds an old one (its owner or a thief) once held the chain (RFC 9700 §4.14.2). Without it,
 * a thief who refreshed twice before the owner came back kept the session.
 */
const ROTATING_KINDS: ReadonlySet<SessionKind> = new Set(["cloudbase"]);

// 128 random bits in base64url, then a dot the secret part's alphabet has not.
const CHAIN_PATTERN = /^[A-Za-z0-9_-]{22}\./;

/**
 * How long after a rotation the token it replaced may rotate the session once more instead of
 * ending it: a refresh whose answer was lost (the SDK retries a refresh that got no JSON back, a
 * proxy's 502 page say, with the same token) must not sign its owner out. The credentials the
 * lost answer held die, so a thief's token caught in that window is caught at the owner's next
 * refresh instead. Okta's default grace period.
 */
const REFRESH_RETRY_GRACE_MS = 30_000;

/**
 * The key a session's chain is stored and looked up by: the tag's SHA-256, so that what the store
 * holds names no chain (with the tag, a reader of the database could end any session by a
 * made-up token naming it).
 */
const chainKeyOf = (tag: string): string => sha256Hex(tag);

// What a rotating token's secret part is: 96 random bits, then the first 96 bits of their MAC,
// each 16 base64url characters (12 bytes encode without padding), 32 in all as before the MAC.
const RANDOM_PART_BYTES = 12;
const RANDOM_PART_CHARS = 16;
const CHAIN_MAC_CHARS = 16;

/** What a rotating token's MAC keys are derived for (`CodeSecrets.allDerivedKeys`). */
const CHAIN_MAC_PURPOSE = "verifyd refresh token chain";

/** The MAC that shows a rotating token of `kind` in `chain` with this random part was issued. */
function chainMac(key: Buffer, kind: SessionKind, chain: string, random: string): string {
  return createHmac("sha256", key)
    .update(`${kind}\0${chain}\0${random}`)
    .digest("base64url")
    .slice(0, CHAIN_MAC_CHARS);
}

/**
 * Session tokens under the server's secrets. A rotating kind's token names its chain, which
 * whoever saw any token of the session knows (a log that keeps a token's first characters, say),
 * so the chain alone must never end a session: its secret part carries a MAC of (kind, chain,
 * random part), and only a token whose MAC verifies is taken as issued (`issuedChainTagOf`).
 */
function sessionTokens(secrets: Pick<CodeSecrets, "allDerivedKeys">) {
  // Newest first: tokens are signed under the newest secret and verified under every one, so a
  // secret's rotation keeps the reuse detection of the tokens issued before it.
  const macKeys = secrets.allDerivedKeys(CHAIN_MAC_PURPOSE);
  return {
    /** A new session token of `kind`; a rotating kind's carries `tag`, else a new one drawn. */
    mint(kind: SessionKind, tag?: string): { token: string; chainKey?: string } {
      const prefix = SESSION_TOKEN_PREFIXES[kind];
      if (!ROTATING_KINDS.has(kind)) return { token: newSecretToken(prefix) };
      const chain = tag ?? randomBytesFromPool(16).toString("base64url");
      const random = randomBytesFromPool(RANDOM_PART_BYTES).toString("base64url");
      const token = `${prefix}_${chain}.${random}${chainMac(macKeys[0]!, kind, chain, random)}`;
      return { token, chainKey: chainKeyOf(chain) };
    },

    /**
     * The chain tag of a rotating kind's token whose MAC verifies under any secret; undefined for
     * any other. Such a token was issued by this server, so presented after its rotation it may
     * end its chain's session. One without a valid MAC is made up, or was minted before tokens
     * had one (those are 32 random characters): both are taken as tokens before chains were, by
     * their hash alone (`findSessionRotatedFrom`), which only an issued token matches. A token
     * from before the MAC, replaced several rotations ago, is thus no longer caught, which ends
     * with the sessions opened before it; a made-up one naming a real chain ends nothing.
     */
    issuedChainTagOf(kind: SessionKind, token: string): string | undefined {
      const tag = chainTagOf(kind, token);
      if (tag === undefined) return undefined;
      const secretPart = token.slice(SESSION_TOKEN_PREFIXES[kind].length + 1 + tag.length + 1);
      if (secretPart.length !== RANDOM_PART_CHARS + CHAIN_MAC_CHARS) return undefined;
      const random = secretPart.slice(0, RANDOM_PART_CHARS);
      const mac = secretPart.slice(RANDOM_PART_CHARS);
      let verified = false;
      // Every key is tried even after a match, so the time taken tells nothing of which matched.
      for (const key of macKeys) {
        if (equalInConstantTime(chainMac(key, kind, tag, random), mac)) verified = true;
      }
      return verified ? tag : undefined;
    },
  };
}

/** The chain tag a rotating kind's token names; undefined for a token minted before chains. */
function chainTagOf(kind: SessionKind, token: string): string | undefined {
  if (!ROTATING_KINDS.has(kind)) return undefined;
  const rest = token.slice(SESSION_TOKEN_PREFIXES[kind].length + 1);
  return CHAIN_PATTERN.test(rest) ? rest.slice(0, 22) : undefined;
}

/**
 * Accounts and sessions for the faces that sign people up and in (Fresns, CloudBase, IDaaS).
 * Signing up and in, resetting a password and the like go through `account-steps.ts`, which proves
 * the contact first; these are the account operations themselves.
 */
export function createAccountService(deps: AccountServiceDeps) {
  const { accounts, counters, clock, logger } = deps;
  const tokens = sessionTokens(deps.secrets);
  const lockKey = (accountId: string) => `login-failures:${accountId}`;
  /**
   * Clears the failed logins under `key` (an account's, or a name's no account has) once a login
   * succeeded or a new password was written. That already happened, so a backend failing here
   * must not turn it into an error answer (a login refused after it passed, a password change
   * reported failed though it stands): what is left uncleared is at most the limit's few
   * failures, which end with their window.
   */
  const clearFailures = async (appId: string, key: string, about: { accountId?: string }): Promise<void> => {
    try {
      await counters.reset(appId, key);
    } catch (error) {
      logger.warn({ err: error, appId, ...about }, "could not clear the failed logins");
    }
  };
  const clearLoginFailures = (appId: string, accountId: string) =>
    clearFailures(appId, lockKey(accountId), { accountId });
  /**
   * Writes `changes` only while the account is at the credentials it was read with: a change the
   * caller's session allowed must not land after a new password ended that session (a thief's
   * edit in flight while the owner resets).
   */
  const saved = async (
    account: Account,
    changes: AccountChanges,
    keepSessions?: string[],
  ): Promise<Account> => {
    const stored = await accounts.update(account.appId, account.id, changes, {
      ifCredentialVersion: account.credentialVersion,
      ...(keepSessions ? { keepSessions } : {}),
    });
    if (stored) return stored;
    if (await accounts.findById(account.appId, account.id)) {
      throw new OtpError("UNAUTHENTICATED", {
        message: "The account's password changed meanwhile; sign in again",
      });
    }
    throw new OtpError("ACCOUNT_NOT_FOUND");
  };

  /** `saved` with a new password's hash, which lifts the login lockout once it is written. */
  const savedWithPassword = async (
    account: Account,
    changes: AccountChanges & { passwordHash: string },
    keepSessions: string[],
  ): Promise<Account> => {
    const stored = await saved(account, changes, keepSessions);
    await clearLoginFailures(account.appId, account.id);
    return stored;
  };

  /**
   * Stores a password that just matched a hash weaker than this build makes (an import's,
   * or an older build's weaker ones) under this build's, once: only while the account's hash is
   * still the one it matched, so a new password set meanwhile wins, and without `update`, which
   * would end the account's sessions for what is the same password. The login already stands,
   * so a failure here is logged, not thrown: the old hash stays, and the next login tries again.
   */
  const rehashPassword = async (account: Account, password: string, matched: string): Promise<void> => {
    try {
      const rehashed = await hashPassword(password);
      if (await accounts.replacePasswordHash(account.appId, account.id, matched, rehashed)) {
        logger.info(
          { appId: account.appId, accountId: account.id },
          "stored the account's password under this build's scrypt parameters",
        );
      }
    } catch (error) {
      logger.warn(
        { err: error, appId: account.appId, accountId: account.id },
        "could not store the account's password under this build's scrypt parameters",
      );
    }
  };

  /**
   * Runs a login attempt (a password's comparison, a code's check) under the lockout: after
   * LOGIN_FAILURE_LIMIT failed attempts in the window the account refuses even the right
   * credentials until the window ends (ACCOUNT_LOCKED). The attempt is counted before it runs,
   * as a code's is: attempts sent at once each take a place in the count, so no more than the
   * limit ever run. One that succeeds clears the count; one that fails other than on its
   * credentials (a backend down) gives its place back.
   */
  function underLoginLockout<T>(app: App, account: Account, attempt: () => Promise<T>): Promise<T> {
    return underLockout(app, lockKey(account.id), attempt, () => clearLoginFailures(app.id, account.id));
  }

  async function underLockout<T>(
    app: App,
    key: string,
    attempt: () => Promise<T>,
    onSuccess: () => Promise<void>,
  ): Promise<T> {
    const lockout = { limit: LOGIN_FAILURE_LIMIT, windowSeconds: LOGIN_FAILURE_WINDOW_SECONDS };
    const giveBack = await countAttemptFirst(
      app.id,
      key,
      lockout,
      (retryAfterSeconds) => new OtpError("ACCOUNT_LOCKED", { details: { retryAfterSeconds } }),
    );
    const result = await givingBackUnlessRefused(attempt, giveBack);
    await onSuccess();
    return result;
  }

  /**
   * Runs a password comparison under the budget of failed ones per client (none for a call that
   * names no client: an internal one). Counted first, as the lockout is, and refused before any
   * hash runs, for a known name and an unknown one alike; a right password gives its place back,
   * as the budget is of failures.
   */
  async function underClientPasswordBudget<T>(
    app: App,
    clientIp: string | undefined,
    attempt: () => Promise<T>,
  ): Promise<T> {
    if (clientIp === undefined) return attempt();
    const rule = PASSWORD_FAILURES_PER_CLIENT;
    const key = `password-failures:${clientAddressOf(clientIp)}:${rule.windowSeconds}`;
    const giveBack = await countAttemptFirst(
      app.id,
      key,
      rule,
      (retryAfterSeconds) =>
        new OtpError("RATE_LIMITED", {
          details: { retryAfterSeconds, rule: ruleName("password_failures_ip", rule) },
        }),
    );
    const result = await givingBackUnlessRefused(attempt, giveBack);
    try {
      await giveBack();
    } catch (error) {
      // the login stands; what stays counted is one failure, which ends with its window
      logger.warn({ err: error, appId: app.id }, "could not give back a right password's place");
    }
    return result;
  }

  /**
   * Counts an attempt (as failed, for a budget of failures) before it runs, so that attempts sent
   * at once each take a place and no more than the limit ever run, and refuses it when that puts
   * `key` over `rule` (a refused one stays counted: it lands in a window already over, and extends
   * none). Resolves to the function that gives the place back.
   */
  async function countAttemptFirst(
    appId: string,
    key: string,
    rule: { limit: number; windowSeconds: number },
    refusal: (retryAfterSeconds: number) => OtpError,
  ): Promise<() => Promise<void>> {
    const now = clock.nowMs();
    const attempts = await counters.hit(appId, key, rule.windowSeconds, now);
    if (attempts.count > rule.limit) {
      throw refusal(Math.max(1, Math.ceil((attempts.resetAtMs - now) / 1000)));
    }
    return () => counters.refund(appId, key, attempts.resetAtMs);
  }

  /** Runs `attempt`; one that fails other than on its credentials (a backend down) gives back. */
  async function givingBackUnlessRefused<T>(
    attempt: () => Promise<T>,
    giveBack: () => Promise<void>,
  ): Promise<T> {
    try {
      return await attempt();
    } catch (error) {
      if (!(isOtpError(error) && CREDENTIAL_REFUSALS.has(error.code))) await giveBack();
      throw error;
    }
  }

  /**
   * Ends the live session a refresh rotated away from `token`, and returns it; null when there is
   * none. A rotated refresh token presented again may come from its owner or from a thief holding
   * a copy, and the server cannot tell which, so the session it became ends, and with it whoever
   * refreshed first (RFC 9700 §4.14.2). Found by the token's chain, whatever rotations came
   * since, only for a token that shows it was issued (`issuedChainTagOf`): a made-up token
   * naming a real chain ends nothing. Any other token, by the one rotation that replaced it (its
   * hash, which only an issued token has). Run only once the token has named no live session.
   */
  async function endSessionRotatedFrom(
    app: App,
    kind: SessionKind,
    token: string,
    nowMs: number,
  ): Promise<Session | null> {
    const tag = tokens.issuedChainTagOf(kind, token);
    const successor = tag
      ? await accounts.findSessionOfChain(app.id, chainKeyOf(tag), nowMs)
      : await accounts.findSessionRotatedFrom(app.id, sha256Hex(token), nowMs);
    if (successor) await revokeSessionById(deps, app, successor.accountId, successor.tokenHash);
    return successor;
  }

  /**
   * Rotates again, to `next`, the session rotated away from `tokenHash` less than
   * REFRESH_RETRY_GRACE_MS ago (its expiry tells when: a rotation sets it `ttlSeconds` ahead);
   * null when there is none, or when another rotation got there first.
   *
   * This rotation leaves no grace behind: its expiry is set the grace and 1 ms short of a full
   * term, so by the rule above it reads as a rotation older than the grace, and the token it
   * replaced (the lost answer's, which no owner presents) ends the session. Else an owner and a
   * thief could hand the session back and forth for ever, each within 30 s of the other. The
   * session's term is 30 s shorter, which no client sees.
   */
  async function rotateAgainWithinGrace(
    app: App,
    tokenHash: string,
    next: { tokenHash: string; expiresAtMs: number; chain?: string },
    ttlSeconds: number,
    nowMs: number,
  ): Promise<Session | null> {
    const successor = await accounts.findSessionRotatedFrom(app.id, tokenHash, nowMs);
    if (!successor || successor.expiresAtMs - ttlSeconds * 1000 < nowMs - REFRESH_RETRY_GRACE_MS) return null;
    const graceless = { ...next, expiresAtMs: next.expiresAtMs - REFRESH_RETRY_GRACE_MS - 1 };
    return accounts.rotateSession(app.id, successor.tokenHash, graceless, nowMs);
  }

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
        credentialVersion: 0,
      };
      return accounts.create(account);
    },

    /**
     * Removes an account a sign-up wrote and its proof then refused, with any session opened on
     * it meanwhile. The refusal is the answer either way: a backend failing here is logged, and
     * leaves the account as the sign-up wrote it.
     */
    async undoSignUp(account: Account): Promise<void> {
      try {
        await accounts.delete(account.appId, account.id);
      } catch (error) {
        logger.warn(
          { err: error, appId: account.appId, accountId: account.id },
          "could not remove the account of a refused sign-up",
        );
      }
    },

    /**
     * Saves the fields given and only those, so that edits made at once from one read all stand,
     * and only while the account is at the credentials `account` was read with (UNAUTHENTICATED
     * otherwise). A new password is hashed and, in the same write, ends the account's sessions
     * but `keepSessions` (session ids: the caller's own), so a thief's logins end with it; it also
     * lifts the login lockout, as whoever set it proved more than a password would.
     * ACCOUNT_EXISTS when a new contact is taken; ACCOUNT_NOT_FOUND when the account has gone.
     */
    async update(
      account: Account,
      changes: Pick<AccountChanges, "email" | "phone" | "username"> & { password?: string },
      options: { keepSessions?: string[] } = {},
    ): Promise<Account> {
      const { password, ...fields } = changes;
      if (password === undefined) return saved(account, fields);
      const passwordHash = await hashPassword(password);
      return savedWithPassword(account, { ...fields, passwordHash }, options.keepSessions ?? []);
    },

    /**
     * Sets a new password that the caller's session alone proves, spending nothing (CloudBase's,
     * behind a sudo token it may send again), as `update` does otherwise: under the account's
     * budget of such changes (RATE_LIMITED past PASSWORD_CHANGES_PER_ACCOUNT, counted before the
     * hash, so that changes sent at once each take a place), and refused as busy rather than
     * queued when the line of hashes is long; such a refusal, which hashed nothing, gives its
     * place back. A change that hashed counts whatever came of it (a password changed meanwhile).
     */
    async changePasswordBySession(
      account: Account,
      password: string,
      options: { keepSessions: string[] },
    ): Promise<Account> {
      const rule = PASSWORD_CHANGES_PER_ACCOUNT;
      const giveBack = await countAttemptFirst(
        account.appId,
        `password-changes:${account.id}`,
        rule,
        (retryAfterSeconds) =>
          new OtpError("RATE_LIMITED", {
            details: { retryAfterSeconds, rule: ruleName("password_changes_account", rule) },
          }),
      );
      let passwordHash: string;
      try {
        passwordHash = await hashRetryablePassword(password);
      } catch (error) {
        await giveBack().catch((failure: unknown) =>
          logger.warn(
            { err: failure, appId: account.appId, accountId: account.id },
            "could not give back an unhashed password change's place",
          ),
        );
        throw error;
      }
      return savedWithPassword(account, { passwordHash }, options.keepSessions);
    },

    /**
     * Sets a new password that a code or token sent to the account's contact proved, not a
     * session: it is written whatever sessions changed meanwhile (a thief's change in flight must
     * not stop the owner's reset), ends every session and lifts the login lockout.
     */
    async resetPassword(account: Account, password: string): Promise<Account> {
      const passwordHash = await hashPassword(password);
      const stored = await accounts.update(account.appId, account.id, { passwordHash }, { keepSessions: [] });
      if (!stored) throw new OtpError("ACCOUNT_NOT_FOUND");
      await clearLoginFailures(account.appId, account.id);
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

    underLoginLockout,

    /**
     * Runs a login attempt for a name no account has (a code login that registers, where the app
     * logs in or registers by code) under a lockout of its own, as `underLoginLockout` runs a known
     * account's: after as many failures the name refuses even the right credentials, so neither
     * the answers nor when the lock comes tell whether an account exists. The name's count is the
     * one `refuseUnknownLogin` keeps, as an account's codes and passwords share its lockout; a
     * success clears it.
     */
    underUnknownLoginLockout<T>(app: App, name: LoginName, attempt: () => Promise<T>): Promise<T> {
      const key = unknownLoginKey(name);
      return underLockout(app, key, attempt, () => clearFailures(app.id, key, {}));
    },

    /**
     * Checks a password under the client's budget of failed ones (`clientIp`: the request's, where
     * a client asked) and the account's login lockout. An account without one (made by a code) is
     * compared with a decoy, so that its answer takes the time a wrong password's does. A right
     * password stored under weaker scrypt parameters than this build's is stored again under them.
     */
    async verifyPasswordLogin(
      app: App,
      account: Account,
      password: string,
      clientIp?: string,
    ): Promise<void> {
      await underClientPasswordBudget(app, clientIp, () =>
        underLoginLockout(app, account, async () => {
          const { passwordHash } = account;
          if (passwordHash === undefined) await decoyCompare(password);
          const ok = passwordHash !== undefined && (await verifyPassword(password, passwordHash));
          if (!ok) throw new OtpError("PASSWORD_INVALID", { details: { field: "password" } });
        }),
      );
      // Only here, after the counters are settled: the rehash is no part of the attempt.
      const { passwordHash } = account;
      if (passwordHash !== undefined && needsRehash(passwordHash)) {
        await rehashPassword(account, password, passwordHash);
      }
    },

    /**
     * A password login for a name no account has: refused as a wrong password is, in the same
     * time, under the same client budget, and locked out after as many tries as an account is, so
     * that neither the answer nor its timing tells which usernames exist.
     */
    refuseUnknownLogin(app: App, name: LoginName, password: string, clientIp?: string): Promise<never> {
      return underClientPasswordBudget(app, clientIp, () =>
        underLockout(
          app,
          unknownLoginKey(name),
          async (): Promise<never> => {
            await decoyCompare(password);
            throw new OtpError("PASSWORD_INVALID", { details: { field: "password" } });
          },
          async () => {},
        ),
      );
    },

    /** A new opaque session token of `kind` (stored hashed). */
    async createSession(
      app: App,
      account: Account,
      ttlSeconds: number,
      kind: SessionKind,
    ): Promise<IssuedSession> {
      const { token, chainKey } = tokens.mint(kind);
      const expiresAtMs = clock.nowMs() + ttlSeconds * 1000;
      // Opened under the credentials `account` was read with: if a new password came since
      // (a login in flight while it was set), the session is dead from the start.
      await accounts.createSession({
        tokenHash: sha256Hex(token),
        appId: app.id,
        accountId: account.id,
        expiresAtMs,
        credentialVersion: account.credentialVersion,
        ...(chainKey ? { chain: chainKey } : {}),
      });
      return { token, expiresAtMs };
    },

    /** The account a live session token of `kind` belongs to, or null. */
    async resolveSession(app: App, token: string, kind: SessionKind): Promise<Account | null> {
      if (!isSessionTokenOf(kind, token)) return null;
      const session = await accounts.findSession(app.id, sha256Hex(token), clock.nowMs());
      return session ? accountLoggedInBy(accounts, session) : null;
    },

    /**
     * Ends a live session of `kind`; a token of another kind, or of no live session, is left
     * alone. A refresh that rotates the session after it was found is ended with it, and so is
     * the session a refresh rotated the token into before (an old refresh token signs out too).
     */
    async revokeSession(app: App, token: string, kind: SessionKind): Promise<void> {
      if (!isSessionTokenOf(kind, token)) return;
      const tokenHash = sha256Hex(token);
      const now = clock.nowMs();
      const session = await accounts.findSession(app.id, tokenHash, now);
      if (session) await revokeSessionById(deps, app, session.accountId, session.tokenHash);
      else await endSessionRotatedFrom(app, kind, token, now);
    },

    /**
     * Moves a live session to a new token (a refresh token's rotation), for exactly one of
     * concurrent callers, and returns the token with the session's account. Null when the session
     * is unknown, expired, already rotated, or older than the account's password. A token already
     * rotated ends the session it was rotated into (reuse detection, RFC 9700 §4.14.2), unless
     * the rotation that replaced it was the session's last and came less than
     * REFRESH_RETRY_GRACE_MS ago: then it rotates the session once more (a retried refresh). Of
     * refreshes sent at once, which the server cannot tell from a thief's, one is answered, one
     * more may be by the grace, and any after end the session. A new password that keeps the
     * old token keeps the new one too (AccountDirectory.rotateSession).
     */
    async rotateSession(
      app: App,
      token: string,
      ttlSeconds: number,
      kind: SessionKind,
    ): Promise<{ account: Account; session: IssuedSession } | null> {
      if (!isSessionTokenOf(kind, token)) return null;
      const now = clock.nowMs();
      // A token minted before chains starts one: its session's next tokens carry it.
      const tag = chainTagOf(kind, token);
      const { token: nextToken, chainKey } = tokens.mint(kind, tag);
      const next = { token: nextToken, expiresAtMs: now + ttlSeconds * 1000 };
      const tokenHash = sha256Hex(token);
      const nextHash = sha256Hex(next.token);
      const nextRow = {
        tokenHash: nextHash,
        expiresAtMs: next.expiresAtMs,
        ...(chainKey ? { chain: chainKey } : {}),
      };
      const rotated =
        (await accounts.rotateSession(app.id, tokenHash, nextRow, now)) ??
        // (before chains, a second rotation would give the session a chain the lost answer's
        // token is not in: no grace for those)
        (tag ? await rotateAgainWithinGrace(app, tokenHash, nextRow, ttlSeconds, now) : null);
      if (!rotated) {
        const ended = await endSessionRotatedFrom(app, kind, token, now);
        if (ended) {
          logger.warn(
            { appId: app.id, accountId: ended.accountId },
            "a rotated refresh token was used again; its session is ended",
          );
        }
        return null;
      }
      let account = await accountLoggedInBy(accounts, rotated);
      if (!account) {
        // A new password that keeps this session may have landed between the rotation and the
        // account's read: its write moved the session on to the new version, so ask the session
        // again rather than refuse (which would strand it under a token nobody was given).
        const again = await accounts.findSession(app.id, nextHash, now);
        account = again ? await accountLoggedInBy(accounts, again) : null;
      }
      return account ? { account, session: { token: next.token, expiresAtMs: rotated.expiresAtMs } } : null;
    },
  };
}

export type AccountService = ReturnType<typeof createAccountService>;
