import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  backendMissing,
  deleteRedisPrefix,
  dropSchema,
  missingReason,
  probePostgres,
  probeRedis,
  uniqueName,
} from "./backends.js";
import {
  codeFor,
  distinctIp,
  type HttpReply,
  request,
  type ServerProcess,
  startServerProcess,
} from "./processes.js";

/**
 * Cluster mode's guarantees across processes (issue 8 "Done means"): two real server processes
 * on one Redis + PostgreSQL (a fresh schema and key prefix for this file), requests spread across
 * both. Needs VERIFYD_TEST_REDIS_URL and VERIFYD_TEST_DATABASE_URL; skipped with the reason when
 * unset, failed when VERIFYD_TEST_REQUIRE_BACKENDS=1.
 */
const [redis, postgres] = await Promise.all([probeRedis(), probePostgres()]);

const tally = (replies: HttpReply[]) =>
  replies.reduce<Record<number, number>>((counts, reply) => {
    counts[reply.status] = (counts[reply.status] ?? 0) + 1;
    return counts;
  }, {});

if (!redis.ok || !postgres.ok) {
  backendMissing("cluster: two processes, one Redis + PostgreSQL", missingReason(redis, postgres));
} else {
  describe("cluster: two processes, one Redis + PostgreSQL", () => {
    const schema = uniqueName("cluster");
    const prefix = `${uniqueName("cluster")}:`;
    let servers: ServerProcess[] = [];
    const server = (index: number) => servers[index % servers.length] as ServerProcess;

    beforeAll(async () => {
      const env = {
        VERIFYD_REDIS_URL: redis.url,
        VERIFYD_DATABASE_URL: postgres.url,
        VERIFYD_DATABASE_SCHEMA: schema,
        VERIFYD_REDIS_PREFIX: prefix,
        VERIFYD_SECRET: randomBytes(24).toString("base64url"),
        VERIFYD_TRUST_PROXY: "127.0.0.1",
        VERIFYD_DATABASE_POOL_SIZE: "4",
      };
      // Started together: both migrate the fresh schema at once, which must happen exactly once.
      servers = await Promise.all([startServerProcess(env), startServerProcess(env)]);
    });
    afterAll(async () => {
      await Promise.all(servers.map((running) => running.stop()));
      await Promise.all([dropSchema(postgres.url, schema), deleteRedisPrefix(redis.url, prefix)]);
    });

    const send = (index: number, to: string) =>
      request(server(index).url, "POST", "/v1/verifications", {
        body: { channel: "email", to, purpose: "sign_in" },
        ip: distinctIp(),
      });
    const check = (index: number, id: string, code: string) =>
      request(server(index).url, "POST", "/v1/verifications/check", { body: { id, code }, ip: distinctIp() });

    it("accepts exactly one of 50 parallel sends to one recipient across both processes", async () => {
      const replies = await Promise.all(
        Array.from({ length: 50 }, (_, index) => send(index, "race@example.com")),
      );
      expect(tally(replies)).toEqual({ 201: 1, 429: 49 });
      expect(
        replies
          .filter((reply) => reply.status === 429)
          .every((reply) => reply.body.code === "RESEND_TOO_SOON"),
      ).toBe(true);
    });

    it("approves exactly one of 50 parallel checks of the right code across both processes", async () => {
      const sent = await send(0, "check@example.com");
      expect(sent.status).toBe(201);
      const code = await codeFor(server(1).url, "check@example.com");
      const replies = await Promise.all(
        Array.from({ length: 50 }, (_, index) => check(index, String(sent.body.id), code)),
      );
      const counts = tally(replies);
      expect(counts[200]).toBe(1);
      expect(Object.keys(counts).every((status) => Number(status) < 500)).toBe(true);
      const approved = replies.find((reply) => reply.status === 200);
      expect(approved?.body).toMatchObject({ status: "approved", token: expect.any(String) });
    });

    it("holds the attempt cap across both processes: 5 wrong guesses counted, then the right code fails", async () => {
      const sent = await send(1, "guess@example.com");
      expect(sent.status).toBe(201);
      const id = String(sent.body.id);
      const code = await codeFor(server(0).url, "guess@example.com");
      const wrong = String((Number(code) + 1) % 1_000_000).padStart(code.length, "0");
      const guesses = await Promise.all(Array.from({ length: 12 }, (_, index) => check(index, id, wrong)));
      expect(tally(guesses)).toEqual({ 422: 5, 429: 7 });
      expect(
        guesses
          .filter((reply) => reply.status === 429)
          .every((reply) => reply.body.code === "TOO_MANY_ATTEMPTS"),
      ).toBe(true);
      const right = await check(0, id, code);
      expect(right.status).toBe(429);
      expect(right.body.code).toBe("TOO_MANY_ATTEMPTS");
      const seen = await request(server(1).url, "GET", `/v1/verifications/${id}`);
      expect(seen.body).toMatchObject({ status: "max_attempts_reached", attempts_remaining: 0 });
    });

    it("refuses malformed text (NUL, lone surrogate) in each face's shape, never as a backend error", async () => {
      // PostgreSQL can neither store nor compare a NUL: such a value used to reach it and come
      // back as 503 (native, CloudBase) or 32301 (Fresns, "no response from the service provider").
      const base = server(0).url;
      const post = (path: string, body: unknown) => request(base, "POST", path, { body, ip: distinctIp() });
      const native = await post("/v1/verifications", {
        channel: "email",
        to: "a\u0000b@example.com",
        purpose: "sign_in",
      });
      expect(native.status).toBe(400);
      expect(native.body).toMatchObject({ code: "VALIDATION_FAILED", field: "to" });
      const cloudbaseSignIn = await post("/auth/v1/signin", {
        username: "a\u0000b",
        password: "s3cret-pass",
      });
      expect(cloudbaseSignIn.status).toBe(400);
      expect(cloudbaseSignIn.body).toMatchObject({ error: "invalid_argument" });
      const cloudbaseApp = await post("/auth/v1/verification?client_id=%00", { email: "nul@example.com" });
      expect(cloudbaseApp.status).toBe(400);
      expect(cloudbaseApp.body).toMatchObject({ error: "invalid_argument" });
      const fresns = await post("/api/v2/account/login", {
        type: "email",
        account: "a\u0000b@example.com",
        password: "eA==",
      });
      expect(fresns.body).toMatchObject({ code: 34101 });
      const inbox = await request(base, "GET", "/v1/dev/inbox?to=a%00b@example.com");
      expect(inbox.status).toBe(400);
      // Half of a surrogate pair, which a jsonb profile cannot hold either.
      const signUp = await post("/auth/v1/signup", {
        email: "lone@example.com",
        verification_token: "vt_unused",
        name: "\ud800",
      });
      expect(signUp.status).toBe(400);
      expect(signUp.body).toMatchObject({ error: "invalid_argument" });
    });

    it("kept both processes up throughout", () => {
      for (const running of servers) expect(running.alive(), running.output()).toBe(true);
    });
  });
}
