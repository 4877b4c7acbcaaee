import { decodeJwt } from "jose";
import type { IssuedSession } from "../../../core/accounts/account-service.js";
import { liveSession, revokeSessionById, sessionIdOf } from "../../../core/accounts/session-id.js";
import { DEFAULT_APP_ID, requireServed } from "../../../core/apps/apps.js";
import type { Engine } from "../../../core/engine.js";
import { OtpError } from "../../../core/errors.js";
import type { Account, App } from "../../../core/types.js";
import { createJwtKeys } from "../../shared/jwt.js";

/** `iss` of every access token verifyd signs. */
export const TOKEN_ISSUER = "verifyd";
// CloudBase's documented lifetimes: access tokens 7200 s, refresh tokens 31 days.
export const ACCESS_TOKEN_TTL_SECONDS = 7200;
export const REFRESH_TOKEN_TTL_SECONDS = 31 * 86_400;
/** the scope of a signed-in (not anonymous) CloudBase user */
export const USER_SCOPE = "user";
/**
 * `iss` of sudo tokens: another issuer than access tokens', so that neither is ever taken for
 * the other.
 */
export const SUDO_TOKEN_ISSUER = "verifyd sudo";
/** How long a re-verification lets a signed-in user change the password or a contact. */
export const SUDO_TOKEN_TTL_SECONDS = 600;

export interface CloudbaseCredentials {
  token_type: "Bearer";
  access_token: string;
  refresh_token: string;
  expires_in: number;
  scope: string;
  sub: string;
  groups: string[];
}

/** A caller proven by a live access token. */
export interface SignedInCaller {
  app: App;
  account: Account;
  /** the session the access token is bound to (its refresh token's session) */
  sessionId: string;
  /** the key of that session's chain, which its refreshes keep (none before chains) */
  sessionChain?: string;
}

/**
 * CloudBase sessions: an opaque refresh token (an account-service session, stored hashed) and a
 * short-lived HS256 access token bound to it by the session id (`sid`). Signing out or refreshing
 * ends the session, and with it every access token issued for it, as CloudBase's sign-out promises
 * ("marks the access_token as invalid").
 */
export function createSessionTokens(engine: Engine) {
  const jwt = createJwtKeys(engine.deps.secrets, engine.deps.clock);
  const { accounts } = engine;
  const unauthenticated = (message: string) => new OtpError("UNAUTHENTICATED", { message });

  /** The app a request names (`client_id`), else the app `default`. */
  async function appNamed(clientId: string | undefined): Promise<App> {
    if (clientId !== undefined) return engine.apps.requireByClientId(clientId, "cloudbase");
    return requireServed(await engine.apps.byId(DEFAULT_APP_ID), "cloudbase");
  }

  async function verifyAccessToken(token: string): Promise<{ aud: string; sub: string; sid: string } | null> {
    const claims = await jwt.verify(token, { issuer: TOKEN_ISSUER });
    if (!claims) return null;
    const { aud, sub, sid } = claims;
    if (typeof aud !== "string" || typeof sub !== "string" || typeof sid !== "string") return null;
    return { aud, sub, sid };
  }

  /** The SDK's credentials for a session: its refresh token and an access token bound to it. */
  async function credentialsFor(
    app: App,
    account: Account,
    session: IssuedSession,
  ): Promise<CloudbaseCredentials> {
    const accessToken = await jwt.sign(
      { scope: USER_SCOPE, sid: sessionIdOf(session.token) },
      {
        subject: account.id,
        audience: app.clientId,
        issuer: TOKEN_ISSUER,
        ttlSeconds: ACCESS_TOKEN_TTL_SECONDS,
      },
    );
    return {
      token_type: "Bearer",
      access_token: accessToken,
      refresh_token: session.token,
      expires_in: ACCESS_TOKEN_TTL_SECONDS,
      scope: USER_SCOPE,
      sub: account.id,
      groups: [],
    };
  }

  return {
    appNamed,

    async issue(app: App, account: Account): Promise<CloudbaseCredentials> {
      return credentialsFor(
        app,
        account,
        await accounts.createSession(app, account, REFRESH_TOKEN_TTL_SECONDS, "cloudbase"),
      );
    },

    /**
     * The signed-in caller of a bearer access token. Calls made with credentials carry no
     * `client_id` (the SDK adds it only to anonymous calls), so the token's audience names the app;
     * a `client_id` that is given must agree with it.
     */
    async authenticate(accessToken: string, clientId: string | undefined): Promise<SignedInCaller> {
      const claims = await verifyAccessToken(accessToken);
      if (!claims) throw unauthenticated("The access token is invalid or expired");
      const app = await appNamed(clientId ?? claims.aud);
      if (app.clientId !== claims.aud) throw unauthenticated("The access token was issued to another client");
      const live = await liveSession(engine.deps, app, claims.sid);
      if (!live || live.account.id !== claims.sub)
        throw unauthenticated("The session has ended; sign in again");
      const { account, session } = live;
      return {
        app,
        account,
        sessionId: claims.sid,
        ...(session.chain ? { sessionChain: session.chain } : {}),
      };
    },

    /**
     * The app a verifyd access token was issued to, or null when the token is not one (a
     * publishable key, say). Only for calls that authorize no user: the audience is authentic
     * once the signature verifies, whether or not the session is still live. A token that says
     * it is verifyd's but does not verify (expired, most often) is refused as before, so the SDK
     * refreshes it, rather than taken for no token and its call served by the default app.
     */
    async appOfAccessToken(accessToken: string): Promise<App | null> {
      const claims = await verifyAccessToken(accessToken);
      if (claims) return appNamed(claims.aud);
      if (claimsToBeOurs(accessToken)) throw unauthenticated("The access token is invalid or expired");
      return null;
    },

    /** Exchanges a refresh token for new credentials; the old refresh token ends (rotation). */
    async refresh(app: App, refreshToken: string): Promise<CloudbaseCredentials> {
      // Rotation: a refresh token works once, even for requests sent at once (the session moves
      // to its new token in one step). One presented again after its rotation also ends the
      // session it was rotated into (reuse detection): of an owner and a thief holding a copy,
      // whoever refreshes second ends the session of whoever refreshed first.
      const rotated = await accounts.rotateSession(app, refreshToken, REFRESH_TOKEN_TTL_SECONDS, "cloudbase");
      if (!rotated) {
        throw new OtpError("TOKEN_INVALID", {
          message: "The refresh token is invalid, expired or revoked",
          details: { field: "refresh_token" },
        });
      }
      return credentialsFor(app, rotated.account, rotated.session);
    },

    /**
     * A sudo token (`/auth/v1/user/sudo`) for a caller who just proved again who they are: an
     * HS256 JWT bound to the caller's account and session, so it dies with the session. Bound by
     * the session's chain where it has one, which a refresh keeps: the SDK refreshes on its own,
     * and a sudo token got just before must still work after (README: "good for 600 s in this
     * session"). A session from before chains is bound by its id, as before.
     */
    async issueSudo(caller: SignedInCaller): Promise<{ sudo_token: string; expires_in: number }> {
      const sudoToken = await jwt.sign(
        caller.sessionChain ? { chain: caller.sessionChain } : { sid: caller.sessionId },
        {
          subject: caller.account.id,
          audience: caller.app.clientId,
          issuer: SUDO_TOKEN_ISSUER,
          ttlSeconds: SUDO_TOKEN_TTL_SECONDS,
        },
      );
      return { sudo_token: sudoToken, expires_in: SUDO_TOKEN_TTL_SECONDS };
    },

    /** Refuses a sudo token that is not this caller's, in this session, and live. */
    async requireSudo(caller: SignedInCaller, sudoToken: string): Promise<void> {
      const claims = await jwt.verify(sudoToken, {
        issuer: SUDO_TOKEN_ISSUER,
        audience: caller.app.clientId,
      });
      const sameSession = caller.sessionChain
        ? claims?.chain === caller.sessionChain
        : claims?.sid === caller.sessionId;
      if (claims?.sub !== caller.account.id || !sameSession) {
        throw new OtpError("TOKEN_INVALID", {
          message: "The sudo_token is invalid or expired; get one from /auth/v1/user/sudo",
          details: { field: "sudo_token" },
        });
      }
    },

    signOut: (caller: SignedInCaller) =>
      revokeSessionById(engine.deps, caller.app, caller.account.id, caller.sessionId),

    /**
     * RFC 7009-style revocation (`/auth/v1/revoke`, what the SDK's signOut calls): an access token
     * ends its session, anything else is tried as a refresh token. Unknown tokens are not an error.
     */
    async revoke(token: string, clientId: string | undefined): Promise<void> {
      const claims = await verifyAccessToken(token);
      if (claims) {
        const app = await appNamed(clientId ?? claims.aud);
        if (app.clientId === claims.aud) await revokeSessionById(engine.deps, app, claims.sub, claims.sid);
        return;
      }
      await accounts.revokeSession(await appNamed(clientId), token, "cloudbase");
    },
  };
}

export type SessionTokens = ReturnType<typeof createSessionTokens>;

/** True when `token` is a JWT whose (unverified) issuer is verifyd's. */
function claimsToBeOurs(token: string): boolean {
  try {
    return decodeJwt(token).iss === TOKEN_ISSUER;
  } catch {
    return false; // not a JWT at all
  }
}
