/**
 * A retry under an Idempotency-Key while its first send is still being committed (cluster mode:
 * the Redis round trip is done, the outbox row's PostgreSQL commit is not). It must not be told the
 * send went through before the row is queued, nor be refused for the captcha pass its first
 * attempt spent: it is asked to try again shortly, and then gets the first answer.
 */
import { afterEach, describe, expect, it } from "vitest";
import { backendMissing, missingReason, probePostgres, probeRedis } from "../cluster/backends.js";
import { type ClusterTestServer, createTestServer } from "../harness.js";

const [redis, postgres] = await Promise.all([probeRedis(), probePostgres()]);

if (!redis.ok || !postgres.ok) {
  backendMissing("idempotent retries while the first send commits (cluster)", missingReason(redis, postgres));
} else {
  describe("idempotent retries while the first send commits (cluster)", () => {
    let t: ClusterTestServer | undefined;
    afterEach(async () => {
      await t?.close();
      t = undefined;
    });

    const open = async (captcha: "never" | "always") => {
      t = await createTestServer({
        cluster: { redisUrl: redis.url, databaseUrl: postgres.url },
        apps: [{ id: "default", abuse: { captcha: { native: captcha } } }],
      });
      return t;
    };

    async function solvedPass(server: ClusterTestServer): Promise<string> {
      const challenge = await server.fastify.inject({
        method: "POST",
        url: "/v1/captcha",
        payload: { type: "image" },
      });
      const { token } = challenge.json();
      const { answer } = (
        await server.fastify.inject({ method: "GET", url: `/v1/dev/captcha/${token}` })
      ).json();
      const verified = await server.fastify.inject({
        method: "POST",
        url: "/v1/captcha/verify",
        payload: { token, answer },
      });
      return verified.json().captcha_token as string;
    }

    for (const captcha of ["never", "always"] as const) {
      it(`answers 503 with Retry-After until the first is committed, then replays it (captcha ${captcha})`, async () => {
        const server = await open(captcha);
        // With a captcha, the retry carries the pass its first attempt spent, as a client's does.
        const headers: Record<string, string> = { "idempotency-key": "retry-me" };
        if (captcha === "always") headers["x-captcha-token"] = await solvedPass(server);
        const send = () =>
          server.fastify.inject({
            method: "POST",
            url: "/v1/verifications",
            headers,
            payload: { channel: "email", to: "ann@example.com", purpose: "sign_in" },
          });
        // Holds the outbox: the first send's commit waits on it, as on a slow database.
        const db = server.stores.postgres;
        await db.query("BEGIN");
        await db.query("LOCK TABLE outbox IN EXCLUSIVE MODE");
        const first = send();
        // Its Redis round trip done, the first send waits on the lock: then the retry comes (a fixed
        // sleep could let the retry come first on a loaded machine, and wait on the lock itself).
        for (let waited = 0; ; waited += 20) {
          const { rows } = await db.query(
            "SELECT count(*)::int AS n FROM pg_locks WHERE relation = 'outbox'::regclass AND NOT granted",
          );
          if (rows[0].n > 0) break;
          if (waited > 10_000) throw new Error("the first send never reached the outbox commit");
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
        const early = await send();
        expect(early.statusCode, early.body).toBe(503);
        expect(early.headers["retry-after"]).toBe("1");
        expect(early.json()).toMatchObject({ code: "STORE_UNAVAILABLE" });
        await db.query("COMMIT");
        const answered = await first;
        expect(answered.statusCode, answered.body).toBe(201);
        const later = await send();
        expect(later.statusCode, later.body).toBe(201);
        expect(later.json()).toEqual(answered.json());
      });
    }
  });
}
