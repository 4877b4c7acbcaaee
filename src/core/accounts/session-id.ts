import { sha256Hex } from "../ids.js";
import type { AccountDirectory, Clock, Session } from "../ports.js";
import type { Account, App } from "../types.js";

/**
 * A session's public id: the SHA-256 of its token, which is what the store keys it by. It names a
 * session without granting it (the token cannot be derived from it), so a face can bind a
 * short-lived signed access token to its long-lived session and end both at sign-out.
 */
export function sessionIdOf(token: string): string {
  return sha256Hex(token);
}

/** The account of the live session with this id, or null when it is unknown, expired or revoked. */
export async function accountOfSession(
  deps: { accounts: AccountDirectory; clock: Clock },
  app: App,
  sessionId: string,
): Promise<Account | null> {
  return (await liveSession(deps, app, sessionId))?.account ?? null;
}

/** The live session with this id and the account it logs in, or null (as `accountOfSession`). */
export async function liveSession(
  deps: { accounts: AccountDirectory; clock: Clock },
  app: App,
  sessionId: string,
): Promise<{ session: Session; account: Account } | null> {
  const session = await deps.accounts.findSession(app.id, sessionId, deps.clock.nowMs());
  const account = session ? await accountLoggedInBy(deps.accounts, session) : null;
  return session && account ? { session, account } : null;
}

/**
 * The account a found session logs in: null when the account has gone, or when its password has
 * changed since the session was opened (`Account.credentialVersion`).
 */
export async function accountLoggedInBy(
  accounts: AccountDirectory,
  session: Session,
): Promise<Account | null> {
  const account = await accounts.findById(session.appId, session.accountId);
  return account?.credentialVersion === session.credentialVersion ? account : null;
}

/**
 * Ends the account's session with this id, or the session a refresh has rotated it to: a
 * sign-out's refresh token may be exchanged while the sign-out is under way, or just before it
 * (the SDK refreshing on its own), and either way the person asked to be signed out. Ending an
 * unknown one is not an error (sign-out is idempotent).
 */
export function revokeSessionById(
  deps: { accounts: AccountDirectory },
  app: App,
  accountId: string,
  sessionId: string,
): Promise<void> {
  return deps.accounts.deleteSession(app.id, accountId, sessionId);
}
