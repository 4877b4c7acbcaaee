/**
 * A retry under an Idempotency-Key while its first send is still being committed (cluster mode:
 * the Redis round trip is done, the outbox row's PostgreSQL commit is not). It must not be told the
 * send went through before the row is queued, nor be refused for the captcha pass its first
 * attempt spent: it is asked to try again shortly, and then gets the first answer.
 */
import { afterEach, describe, expect, it } from "vitest";
import { backendMissing, missingReason, probePostgres, probeRedis } from "../cluster/backends.js";
import { holdOutboxCommits } from "../cluster/held-outbox.js";
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
        const hold = await holdOutboxCommits(server.stores.postgres);
        const first = send();
        // Its Redis round trip done, the first send waits on the hold: then the retry comes.
        await hold.sendWaiting();
        const early = await send();
        expect(early.statusCode, early.body).toBe(503);
        expect(early.headers["retry-after"]).toBe("1");
        expect(early.json()).toMatchObject({ code: "STORE_UNAVAILABLE" });
        await hold.release();
        const answered = await first;
        expect(answered.statusCode, answered.body).toBe(201);
        const later = await send();
        expect(later.statusCode, later.body).toBe(201);
        expect(later.json()).toEqual(answered.json());
      });
    }
  });
}
