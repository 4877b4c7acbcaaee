import { sha256Hex } from "../ids.js";
import type { AccountDirectory, Clock } from "../ports.js";
import type { Account, App } from "../types.js";
import { isSessionTokenOf, type SessionKind } from "./account-service.js";
import { accountLoggedInBy } from "./session-id.js";

export type SessionLookup =
  | { kind: "live"; account: Account; expiresAtMs: number }
  | { kind: "expired"; accountId: string }
  | { kind: "unknown" };

/**
 * Resolves a session token and, when it logs nobody in, says whether it is unknown or expired, so
 * a face can tell a forged token from one that ran out (Fresns 31505 vs 31504). An expired session
 * reads as expired only until the purger removes it; after that it is unknown. A session another
 * face opened is unknown here (`SessionKind`).
 */
export async function lookupSession(
  deps: { accounts: AccountDirectory; clock: Clock },
  app: App,
  token: string,
  kind: SessionKind,
): Promise<SessionLookup> {
  if (!isSessionTokenOf(kind, token)) return { kind: "unknown" };
  // `findSession` returns the sessions live at the time it is given; asking at time 0 also finds
  // expired ones not yet purged, and their expiry is then judged here against the real clock.
  const session = await deps.accounts.findSession(app.id, sha256Hex(token), 0);
  if (!session) return { kind: "unknown" };
  if (session.expiresAtMs <= deps.clock.nowMs()) return { kind: "expired", accountId: session.accountId };
  const account = await accountLoggedInBy(deps.accounts, session);
  return account ? { kind: "live", account, expiresAtMs: session.expiresAtMs } : { kind: "unknown" };
}
