import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
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
import { distinctIp, eventually, request, type ServerProcess, startServerProcess } from "./processes.js";

/**
 * A secret rotation in cluster mode (issue #8). Redis keeps a slot's code under the slot's tag,
 * a keyed hash that changes with the newest secret: a server restarted with the secrets
 * [new, old] must still answer for a code issued under [old], and supersede it on a resend.
 */
const [redis, postgres] = await Promise.all([probeRedis(), probePostgres()]);

if (!redis.ok || !postgres.ok) {
  backendMissing("cluster: secret rotation", missingReason(redis, postgres));
} else {
  describe("cluster: secret rotation", () => {
    const schema = uniqueName("rotation");
    const prefix = `${uniqueName("rotation")}:`;
    const oldSecret = randomBytes(24).toString("base64url");
    const newSecret = randomBytes(24).toString("base64url");
    const configDir = mkdtempSync(join(tmpdir(), "verifyd-rotation-"));
    const servers: ServerProcess[] = [];
    const start = async (secrets: string[]) => {
      const server = await startServerProcess({
        VERIFYD_REDIS_URL: redis.url,
        VERIFYD_DATABASE_URL: postgres.url,
        VERIFYD_DATABASE_SCHEMA: schema,
        VERIFYD_REDIS_PREFIX: prefix,
        VERIFYD_SECRET: secrets.join(","),
        VERIFYD_TRUST_PROXY: "127.0.0.1",
        VERIFYD_CONFIG: join(configDir, "config.json"),
      });
      servers.push(server);
      return server;
    };

    beforeAll(() => {
      // A resend within the minute is what this is about, so the 1-per-60-s rule is relaxed.
      writeFileSync(
        join(configDir, "config.json"),
        JSON.stringify({
          apps: [{ id: "default", policy: { perRecipient: [{ limit: 10, windowSeconds: 60 }] } }],
        }),
      );
    });
    afterAll(async () => {
      await Promise.all(servers.map((server) => server.stop()));
      rmSync(configDir, { recursive: true, force: true });
      await Promise.all([dropSchema(postgres.url, schema), deleteRedisPrefix(redis.url, prefix)]);
    });

    const send = (server: ServerProcess, to: string) =>
      request(server.url, "POST", "/v1/verifications", {
        body: { channel: "email", to, purpose: "sign_in" },
        ip: distinctIp(),
      });
    const check = (server: ServerProcess, id: string, code: string) =>
      request(server.url, "POST", "/v1/verifications/check", { body: { id, code }, ip: distinctIp() });
    // The newest code in the dev inbox (shared, in PostgreSQL) once it holds `count` messages for `to`.
    const nthCode = async (server: ServerProcess, to: string, count: number) => {
      let code = "";
      const arrived = await eventually(async () => {
        const inbox = await request(server.url, "GET", `/v1/dev/inbox?to=${encodeURIComponent(to)}`);
        const messages = (inbox.body.messages ?? []) as { code: string }[];
        code = messages.length >= count ? (messages[0]?.code ?? "") : "";
        return code !== "";
      });
      if (!arrived) throw new Error(`message ${count} for ${to} never reached the dev inbox`);
      return code;
    };
    const status = async (server: ServerProcess, id: string) =>
      (await request(server.url, "GET", `/v1/verifications/${id}`)).body.status;

    it("supersedes a code issued before the rotation when its recipient is sent a new one", async () => {
      const before = await start([oldSecret]);
      const to = "rotation@example.com";
      const first = await send(before, to);
      expect(first.status).toBe(201);
      const firstId = String(first.body.id);
      const firstCode = await nthCode(before, to, 1);
      await before.stop();

      const after = await start([newSecret, oldSecret]);
      expect(await status(after, firstId)).toBe("pending");
      const second = await send(after, to);
      expect(second.status).toBe(201);
      const secondId = String(second.body.id);
      // Another tag: the new code lives under another key than the one it supersedes.
      expect(secondId.slice(0, 15)).not.toBe(firstId.slice(0, 15));
      expect(await status(after, firstId)).toBe("superseded");
      const stale = await check(after, firstId, firstCode);
      expect(stale.status).toBe(410);
      expect(stale.body.code).toBe("CODE_SUPERSEDED");
      const secondCode = await nthCode(after, to, 2);
      const approved = await check(after, secondId, secondCode);
      expect(approved.status, JSON.stringify(approved.body)).toBe(200);
    });
  });
}
