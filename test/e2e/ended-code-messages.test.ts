/**
 * A message still queued when its code was canceled (or used) is not sent: its code could never
 * be checked; nor is one whose code is gone from the store. The drop is recorded as the message's
 * delivery, so GET tells why nothing went out. Only ends nothing can undo count: a superseded
 * code's message still goes out.
 */
import { afterEach, describe, expect, it } from "vitest";
import type { DeliveryBackend } from "../../src/storage/backend.js";
import { createClusterDeliveryBackend } from "../../src/storage/cluster/index.js";
import { createSqliteDeliveryBackend, sqlitePath } from "../../src/storage/sqlite/index.js";
import { backendMissing, missingReason, probePostgres, probeRedis } from "../cluster/backends.js";
import { type ClusterTestServer, createTestServer, type TestServer } from "../harness.js";
import { deliveriesOf } from "./verification-view.js";

const [redis, postgres] = await Promise.all([probeRedis(), probePostgres()]);
type Server = TestServer | ClusterTestServer;
/** A way to run the server, and the backend its delivery thread would open beside it. */
type Mode = [string, () => Promise<Server>, (server: Server) => DeliveryBackend];
const modes: Mode[] = [
  [
    "embedded",
    () => createTestServer(),
    (server) => createSqliteDeliveryBackend({ path: sqlitePath(server.dataDir) }),
  ],
];
if (redis.ok && postgres.ok) {
  modes.push([
    "cluster",
    () => createTestServer({ cluster: { redisUrl: redis.url, databaseUrl: postgres.url } }),
    (server) =>
      createClusterDeliveryBackend({
        databaseUrl: postgres.url,
        redisUrl: redis.url,
        redisPrefix: (server as ClusterTestServer).stores.redisPrefix,
        databaseSchema: (server as ClusterTestServer).stores.schema,
      }),
  ]);
} else {
  backendMissing("messages of codes that ended while queued (cluster)", missingReason(redis, postgres));
}

describe.each(modes)("messages of codes that ended while queued (%s)", (_, open, threadBackend) => {
  let t: Server | undefined;
  afterEach(async () => {
    await t?.close();
    t = undefined;
  });

  const send = async (server: Server, to: string) => {
    const sent = await server.fastify.inject({
      method: "POST",
      url: "/v1/verifications",
      payload: { channel: "email", to, purpose: "sign_in" },
    });
    expect(sent.statusCode, sent.body).toBe(201);
    return sent.json().id as string;
  };
  const deliveries = (server: Server, id: string) => deliveriesOf(server, id);

  // A supersede is not final: a cluster resend whose outbox commit fails gives the code back
  // (below), so a superseded code's message still goes out. @see .scratch/diff17b, diff17c
  it("still sends a code a resend superseded while its message waited", async () => {
    t = await open();
    const to = `resent-${Date.now()}@example.com`;
    const first = await send(t, to);
    t.clock.advanceSeconds(61);
    await send(t, to);
    await t.deliverAll();
    expect(t.email.messages.filter((message) => message.to === to)).toHaveLength(2);
    expect(await deliveries(t, first)).toEqual([expect.objectContaining({ status: "sent" })]);
  });

  it("does not send a canceled code", async () => {
    t = await open();
    const to = `canceled-${Date.now()}@example.com`;
    const id = await send(t, to);
    const canceled = await t.fastify.inject({ method: "POST", url: `/v1/verifications/${id}/cancel` });
    expect(canceled.json().status).toBe("canceled");
    // A message claimed at once is sent without a look-up (the usual case, and the cheap one):
    // this one waited, as behind a backlog or a provider's outage.
    t.clock.advanceSeconds(3);
    await t.deliverAll();
    expect(t.email.messages.filter((message) => message.to === to)).toEqual([]);
    expect(await deliveries(t, id)).toEqual([
      expect.objectContaining({ provider: "none", status: "failed", error: "code canceled" }),
    ]);
  });

  // Regression: with the codes gone from Redis (its keys deleted, a Redis restarted empty) while
  // the messages waited on a provider's outage, every message went out once the provider was back,
  // carrying a code every check answered 404 (an SMS paid for nothing). @see fix-stores review 1
  it("does not send a code gone from the store while its message waited", async () => {
    t = await open();
    const server = t;
    const to = `gone-${Date.now()}@example.com`;
    const id = await send(server, to);
    if ("stores" in server) {
      const { redis, redisPrefix } = server.stores;
      for (const key of await redis.keys(`${redisPrefix}*`)) await redis.del(key);
    } else {
      server.server.backend.db.prepare("DELETE FROM codes WHERE id = ?").run(id);
    }
    expect((await server.fastify.inject({ method: "GET", url: `/v1/verifications/${id}` })).statusCode).toBe(
      404,
    );
    server.clock.advanceSeconds(3);
    await server.deliverAll();
    expect(server.email.messages.filter((message) => message.to === to)).toEqual([]);
    // GET answers 404 now; the drop is recorded where GET reads a verification's deliveries
    expect(await server.server.backend.verifications.deliveries("default", id)).toEqual([
      expect.objectContaining({ provider: "none", status: "failed", error: "code gone" }),
    ]);
  });

  it("lets the delivery thread's own connection read the codes, as it does to drop them", async () => {
    t = await open();
    const id = await send(t, `thread-${Date.now()}@example.com`);
    await t.fastify.inject({ method: "POST", url: `/v1/verifications/${id}/cancel` });
    const backend = threadBackend(t);
    try {
      // Redis is connected lazily there: until it answers, codes read as unknown (sent anyway).
      let record = null;
      for (let tries = 0; tries < 50 && !record; tries++) {
        record = await backend.codes.get("default", id).catch(() => null);
        if (!record) await new Promise((resolve) => setTimeout(resolve, 20));
      }
      expect(record).toMatchObject({ id, status: "canceled" });
      expect(await backend.codes.get("default", "vf_unknown")).toBeNull();
    } finally {
      await backend.close();
    }
  });
});

if (redis.ok && postgres.ok) {
  describe("messages of codes a failed resend gave back (cluster)", () => {
    let t: ClusterTestServer | undefined;
    afterEach(async () => {
      await t?.close();
      t = undefined;
    });

    // Regression: a resend supersedes the code in Redis before its outbox row commits, and a
    // failed commit gives the code back; a delivery pass in between dropped the message of a code
    // that was pending again. @see .scratch/diff17b withdraw-race.test.ts, .scratch/diff17c
    it("sends the message of a code that is pending again once the resend's commit failed", async () => {
      t = await createTestServer({ cluster: { redisUrl: redis.url, databaseUrl: postgres.url } });
      const server = t;
      const to = `given-back-${Date.now()}@example.com`;
      const send = () =>
        server.fastify.inject({
          method: "POST",
          url: "/v1/verifications",
          payload: { channel: "email", to, purpose: "sign_in" },
        });
      const first = (await send()).json().id as string;
      // The resend's outbox row is refused by PostgreSQL, a second after it was asked for.
      await server.stores.postgres.query(`CREATE FUNCTION refuse_slowly() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN PERFORM pg_sleep(1); RAISE EXCEPTION 'refused for the test'; END $$`);
      await server.stores.postgres.query(
        "CREATE TRIGGER refuse_slowly BEFORE INSERT ON outbox FOR EACH ROW EXECUTE FUNCTION refuse_slowly()",
      );
      server.clock.advanceSeconds(61);
      const resend = send();
      // Once the resend's Redis round trip is done (its commit then takes a second), the first code
      // reads superseded: delivered then, its message is the one in question.
      const status = async () =>
        (await server.fastify.inject({ method: "GET", url: `/v1/verifications/${first}` })).json().status;
      for (let waited = 0; (await status()) !== "superseded"; waited += 10) {
        if (waited > 5_000) throw new Error("the resend never superseded the first code");
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      await server.deliverAll();
      expect((await resend).statusCode).toBe(503);
      expect(server.email.messages.filter((message) => message.to === to)).toHaveLength(1);
      const view = (await server.fastify.inject({ method: "GET", url: `/v1/verifications/${first}` })).json();
      expect(view).toMatchObject({ status: "pending" });
      expect(view.deliveries.at(-1)).toMatchObject({ status: "sent" });
    });
  });
}
