import { errors, jwtVerify, SignJWT } from "jose";
import type { Clock } from "../../core/ports.js";
import type { CodeSecrets } from "../../core/secrets.js";

/**
 * HS256 JWTs for the faces that return them (CloudBase access tokens, IDaaS id_token). The key is
 * derived from each configured secret, newest first, so rotating VERIFYD_SECRET rotates the key:
 * tokens signed under the previous secret verify until it is removed. `kid` names the key.
 */
export function createJwtKeys(secrets: CodeSecrets, clock: Clock = { nowMs: () => Date.now() }) {
  const keys = secrets
    .allDerivedKeys("jwt signing")
    .map((key, index) => ({ key, kid: `k${secrets.keyIds[index]}` }));
  const newest = keys[0]!;

  return {
    async sign(
      claims: Record<string, unknown>,
      options: { subject: string; audience: string; issuer: string; ttlSeconds: number },
    ): Promise<string> {
      return (
        new SignJWT(claims)
          .setProtectedHeader({ alg: "HS256", typ: "JWT", kid: newest.kid })
          .setSubject(options.subject)
          .setAudience(options.audience)
          .setIssuer(options.issuer)
          // Times come from the engine's clock, so tests with a fixed clock can expire tokens.
          .setIssuedAt(Math.floor(clock.nowMs() / 1000))
          .setExpirationTime(Math.floor(clock.nowMs() / 1000) + options.ttlSeconds)
          .sign(newest.key)
      );
    },

    /** The verified claims, or null when the token is malformed, expired or signed by no known key. */
    async verify(
      token: string,
      options: { audience?: string; issuer: string },
    ): Promise<Record<string, unknown> | null> {
      for (const { key } of keys) {
        try {
          const { payload } = await jwtVerify(token, key, {
            algorithms: ["HS256"],
            currentDate: new Date(clock.nowMs()),
            issuer: options.issuer,
            ...(options.audience ? { audience: options.audience } : {}),
          });
          return payload as Record<string, unknown>;
        } catch (error) {
          // A bad signature may mean an older key; any other failure is final.
          if (!(error instanceof errors.JWSSignatureVerificationFailed)) return null;
        }
      }
      return null;
    },
  };
}

export type JwtKeys = ReturnType<typeof createJwtKeys>;
