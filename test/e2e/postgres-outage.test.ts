/**
 * A PostgreSQL outage in cluster mode stops only what needs PostgreSQL: codes and tokens live in
 * Redis (DESIGN.md "Modes"), so checking a code, redeeming its token and CloudBase's verify go on
 * for the apps the server has loaded, for a bounded time (APP_STALE_MAX_MS), and then answer 503.
 * PostgreSQL is taken away by cutting a loopback proxy before it, so the shared service is never
 * touched. @see the cluster review, finding 1
 */
import { afterEach, describe, expect, it } from "vitest";
import { APP_STALE_MAX_MS } from "../../src/core/apps/apps.js";
import {
  backendAddress,
  backendMissing,
  missingReason,
  probePostgres,
  probeRedis,
  throughProxy,
} from "../cluster/backends.js";
import { type ClusterTestServer, createTestServer } from "../harness.js";
import { startTcpProxy, type TcpProxy } from "../servers/tcp-proxy.js";

const [redis, postgres] = await Promise.all([probeRedis(), probePostgres()]);

if (!redis.ok || !postgres.ok) {
  backendMissing("cluster: a PostgreSQL outage", missingReason(redis, postgres));
} else {
  describe("cluster: a PostgreSQL outage", () => {
    let proxy: TcpProxy | undefined;
    let t: ClusterTestServer | undefined;
    afterEach(async () => {
      proxy?.restore();
      await t?.close();
      await proxy?.close();
      t = undefined;
      proxy = undefined;
    });

    it("goes on checking codes, redeeming tokens and verifying CloudBase codes, for a bounded time", async () => {
      proxy = await startTcpProxy(backendAddress(postgres.url, 5432));
      t = await createTestServer({
        cluster: { redisUrl: redis.url, databaseUrl: throughProxy(postgres.url, proxy.port) },
      });
      const server = t;
      const post = (url: string, payload: Record<string, unknown>) =>
        server.fastify.inject({ method: "POST", url, payload });
      const native = await post("/v1/verifications", {
        channel: "email",
        to: "outage@example.com",
        purpose: "sign_in",
      });
      expect(native.statusCode, native.body).toBe(201);
      const cloudbase = await post("/auth/v1/verification", {
        email: "cb-outage@example.com",
        target: "ANY",
      });
      expect(cloudbase.statusCode, cloudbase.body).toBe(200);
      await server.deliverAll();
      const codes = {
        native: server.email.lastCodeFor("outage@example.com"),
        cloudbase: server.email.lastCodeFor("cb-outage@example.com"),
      };

      proxy.cut();
      // Past the app cache's 5 s: the app can no longer be read from PostgreSQL.
      server.clock.advanceSeconds(6);
      const checked = await post("/v1/verifications/check", { id: native.json().id, code: codes.native });
      expect(checked.statusCode, checked.body).toBe(200);
      const redeemed = await post("/v1/tokens/redeem", { token: checked.json().token });
      expect(redeemed.statusCode, redeemed.body).toBe(200);
      expect(redeemed.json()).toMatchObject({ to: "outage@example.com", app: "default" });
      const verified = await post("/auth/v1/verification/verify", {
        verification_id: cloudbase.json().verification_id,
        verification_code: codes.cloudbase,
      });
      expect(verified.statusCode, verified.body).toBe(200);

      // Past the bound the server no longer vouches for the app: 503 in each face's shape.
      server.clock.advanceSeconds(APP_STALE_MAX_MS / 1000);
      const late = await post("/v1/verifications/check", { id: native.json().id, code: "000000" });
      expect(late.statusCode, late.body).toBe(503);
      expect(late.json()).toMatchObject({ code: "STORE_UNAVAILABLE" });
    });
  });
}
