import { afterAll, describe, expect, it } from "vitest";
import {
  backendMissing,
  dropSchema,
  missingReason,
  probePostgres,
  probeRedis,
  uniqueName,
} from "../../../test/cluster/backends.js";
import { freePort } from "../../../test/cluster/processes.js";
import { createLogger } from "../../observability/logger.js";
import { BackendUnusable, createClusterBackend } from "./index.js";

const [redisProbe, postgresProbe] = await Promise.all([probeRedis(), probePostgres()]);
const missing = missingReason(redisProbe, postgresProbe);

if (missing) {
  backendMissing("createClusterBackend: a backend it cannot use", missing);
} else if (redisProbe.ok && postgresProbe.ok) {
  const redisUrl = redisProbe.url;
  const databaseUrl = postgresProbe.url;
  const logger = createLogger({ level: "silent", devCodes: false });
  const databaseSchema = uniqueName("unusable");
  afterAll(() => dropSchema(databaseUrl, databaseSchema));
  // Migrating its own schema first, as a start does, so that Redis is reached at all.
  const start = (urls: { redisUrl: string; databaseUrl: string }) =>
    createClusterBackend({ ...urls, databaseSchema, logger });

  // Regression: a start with Redis down printed only "Connection is closed.", with PostgreSQL down
  // "connect ECONNREFUSED 127.0.0.1:1": neither said which setting to look at.
  describe("createClusterBackend: a backend it cannot use", () => {
    it("names VERIFYD_REDIS_URL when Redis does not answer", async () => {
      const port = await freePort();
      const started = start({ redisUrl: `redis://127.0.0.1:${port}`, databaseUrl });
      await expect(started).rejects.toThrow(BackendUnusable);
      await expect(started).rejects.toThrow(/^VERIFYD_REDIS_URL \(redisUrl\): cannot use Redis: /);
    });

    it("names VERIFYD_DATABASE_URL when PostgreSQL does not answer, and never repeats the URL", async () => {
      const port = await freePort();
      const started = start({ redisUrl, databaseUrl: `postgres://verifyd:hunter2@127.0.0.1:${port}/test` });
      await expect(started).rejects.toThrow(
        /^VERIFYD_DATABASE_URL \(databaseUrl\): cannot use PostgreSQL: .*ECONNREFUSED/,
      );
      await expect(started).rejects.not.toThrow(/hunter2/);
    });
  });
}
