import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  backendAddress,
  backendMissing,
  deleteRedisPrefix,
  dropSchema,
  missingReason,
  probePostgres,
  probeRedis,
  throughProxy,
  uniqueName,
} from "../test/cluster/backends.js";
import { startTcpProxy, type TcpProxy } from "../test/servers/tcp-proxy.js";
import { loadConfig } from "./config/load.js";
import { createLogger } from "./observability/logger.js";
import { assembleServer, type RunningServer } from "./server.js";

// Regression: with PostgreSQL away for 20 s, a cluster server wrote 20 `purge failed` and 20
// `outbox claim failed` error lines, each with its stack (its loops retry every second), and none
// when they worked again. Now each loop tells its outage's start, a reminder a minute, and its end.
const [redisProbe, postgresProbe] = await Promise.all([probeRedis(), probePostgres()]);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

if (!redisProbe.ok || !postgresProbe.ok) {
  backendMissing("a cluster server's background loops", missingReason(redisProbe, postgresProbe));
} else {
  const redisUrl = redisProbe.url;
  const databaseUrl = postgresProbe.url;
  describe("a cluster server's background loops while PostgreSQL is away", () => {
    const schema = uniqueName("loops");
    const redisPrefix = `${uniqueName("loops")}:`;
    const dataDir = mkdtempSync(join(tmpdir(), "verifyd-loops-"));
    const lines: Array<{ level: number; msg: string; failures?: number }> = [];
    let proxy: TcpProxy;
    let server: RunningServer;

    beforeAll(async () => {
      proxy = await startTcpProxy(backendAddress(databaseUrl, 5432));
      const config = loadConfig({
        VERIFYD_DATA_DIR: dataDir,
        VERIFYD_REDIS_URL: redisUrl,
        VERIFYD_DATABASE_URL: throughProxy(databaseUrl, proxy.port),
        VERIFYD_DATABASE_SCHEMA: schema,
        VERIFYD_REDIS_PREFIX: redisPrefix,
      });
      const logger = createLogger(
        { level: "info", devCodes: false },
        { write: (line: string) => void lines.push(JSON.parse(line)) },
      );
      // delivery on this thread: its outbox worker claims (and fails) in this process
      server = await assembleServer({ config, logger });
    });
    afterAll(async () => {
      await server?.close();
      await proxy?.close();
      await Promise.all([dropSchema(databaseUrl, schema), deleteRedisPrefix(redisUrl, redisPrefix)]);
      rmSync(dataDir, { recursive: true, force: true });
    });

    it("logs each loop's outage once, and once more when it works again", async () => {
      server.startBackground();
      await sleep(500);
      proxy.cut();
      // the purge rests a second between passes, the worker polls every second: three rounds each
      await sleep(3_500);
      proxy.restore();
      const told = (msg: string) => lines.filter((line) => line.msg === msg);
      const deadline = Date.now() + 10_000;
      while (
        (told("purge resumed").length === 0 || told("outbox claim resumed").length === 0) &&
        Date.now() < deadline
      )
        await sleep(50);
      for (const loop of ["purge", "outbox claim"]) {
        expect(told(`${loop} failed`), loop).toHaveLength(1);
        expect(told(`${loop} failed`)[0]?.level, loop).toBe(50);
        expect(told(`${loop} still failing`), loop).toHaveLength(0);
        expect(told(`${loop} resumed`), loop).toHaveLength(1);
        expect(told(`${loop} resumed`)[0]?.failures, loop).toBeGreaterThanOrEqual(2);
      }
    });
  });
}
