import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { backendMissing, dropSchema, probePostgres, uniqueName } from "../test/cluster/backends.js";
import { type Config, ConfigError, loadConfig } from "./config/load.js";
import { resolveSecrets } from "./server.js";
import { migratePostgresDatabase } from "./storage/postgres/postgres-migrator.js";

const parent = mkdtempSync(join(tmpdir(), "verifyd-dev-secret-"));
afterAll(() => rmSync(parent, { recursive: true, force: true }));

const devConfig = (dataDir: string) => loadConfig({ VERIFYD_DATA_DIR: dataDir });

describe("dev mode's generated secret", () => {
  it("is made once, its owner's alone, and read back the same", async () => {
    const dataDir = join(parent, "fresh");
    const [first] = await resolveSecrets(devConfig(dataDir));
    expect(first).toMatch(/^[\w-]{43}$/);
    expect(statSync(join(dataDir, "dev-secret")).mode & 0o777).toBe(0o600);
    expect(await resolveSecrets(devConfig(dataDir))).toEqual([first]);
  });

  // Regression: an empty file (a write cut short by a full disk) was taken as the secret, so every
  // code's hash and every sealed setting was keyed by the empty string.
  it.each([
    ["empty", ""],
    ["short", "abc\n"],
  ])("refuses a file that is %s, naming the data dir", async (_, content) => {
    const dataDir = mkdtempSync(join(parent, "cut-"));
    writeFileSync(join(dataDir, "dev-secret"), content);
    await expect(resolveSecrets(devConfig(dataDir))).rejects.toThrow(ConfigError);
    await expect(resolveSecrets(devConfig(dataDir))).rejects.toThrow(
      /VERIFYD_DATA_DIR \(dataDir\): .*dev-secret holds \d characters/,
    );
  });
});

const postgres = await probePostgres();
if (!postgres.ok) {
  backendMissing("dev mode's generated secret in cluster mode", postgres.reason);
} else {
  /**
   * For the enclosing describe, a migrated schema of its own: the configuration of a process of a
   * cluster on it, with `dataDir` (Redis is not reached: the secret is PostgreSQL's).
   */
  const clusterOnFreshSchema = (): ((dataDir: string) => Config) => {
    const schema = uniqueName("devsecret");
    beforeAll(() => migratePostgresDatabase(postgres.url, schema));
    afterAll(() => dropSchema(postgres.url, schema));
    return (dataDir) =>
      loadConfig({
        VERIFYD_DATA_DIR: dataDir,
        VERIFYD_DATABASE_URL: postgres.url,
        VERIFYD_DATABASE_SCHEMA: schema,
        VERIFYD_REDIS_URL: "redis://127.0.0.1:1",
      });
  };
  const newDataDir = () => mkdtempSync(join(parent, "cluster-"));

  describe("dev mode's generated secret in cluster mode", () => {
    const clusterConfig = clusterOnFreshSchema();

    // Regression: each process generated one in its own data dir, so a right code sent through one
    // process was refused (CODE_INVALID) on another, and what one sealed did not open on another.
    it("is the same for every process, each with a data dir of its own, started at once", async () => {
      const dataDirs = Array.from({ length: 4 }, newDataDir);
      const resolved = await Promise.all(dataDirs.map((dataDir) => resolveSecrets(clusterConfig(dataDir))));
      const [first] = resolved[0] as string[];
      expect(first).toMatch(/^[\w-]{43}$/);
      expect(resolved).toEqual(dataDirs.map(() => [first]));
      // and a process started later has it too
      expect(await resolveSecrets(clusterConfig(newDataDir()))).toEqual([first]);
      for (const dataDir of dataDirs) expect(readdirSync(dataDir)).toEqual([]);
    });

    it("keeps a data dir's secret of an earlier version after the shared one", async () => {
      const [shared] = await resolveSecrets(clusterConfig(newDataDir()));
      const dataDir = newDataDir();
      writeFileSync(join(dataDir, "dev-secret"), "an-earlier-versions-secret-0123456789");
      expect(await resolveSecrets(clusterConfig(dataDir))).toEqual([
        shared,
        "an-earlier-versions-secret-0123456789",
      ]);
    });
  });

  describe("dev mode's generated secret in a cluster not started yet", () => {
    const clusterConfig = clusterOnFreshSchema();

    it("is the earlier version's of the first process to start, when its data dir has one", async () => {
      const dataDir = newDataDir();
      writeFileSync(join(dataDir, "dev-secret"), "the-first-processs-secret-0123456789");
      expect(await resolveSecrets(clusterConfig(dataDir))).toEqual(["the-first-processs-secret-0123456789"]);
      expect(await resolveSecrets(clusterConfig(newDataDir()))).toEqual([
        "the-first-processs-secret-0123456789",
      ]);
    });
  });
}
