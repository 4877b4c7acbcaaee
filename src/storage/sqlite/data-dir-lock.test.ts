import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { type AddressInfo, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { createTestServer, type TestServer } from "../../../test/harness.js";
import { loadConfig } from "../../config/load.js";
import { createLogger } from "../../observability/logger.js";
import { startServer } from "../../server.js";
import { DataDirInUse, lockDataDir } from "./data-dir-lock.js";

const BUILT_LOCK = new URL("../../../dist/storage/sqlite/data-dir-lock.js", import.meta.url).href;
const dirs: string[] = [];
const servers: TestServer[] = [];
afterEach(async () => {
  for (const server of servers.splice(0)) await server.close();
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "verifyd-lock-"));
  dirs.push(dir);
  return dir;
}

describe("one server per data dir", () => {
  it("refuses a second process's server on a dir one serves, and lets one in once it has closed", async () => {
    const dataDir = tempDir();
    const first = await createTestServer({ dataDir });
    servers.push(first);
    // another process, as a second `verifyd` would take it (the built module: the vitest setup builds)
    const takeIt = () =>
      spawnSync(
        process.execPath,
        [
          "--input-type=module",
          "-e",
          `import { lockDataDir } from ${JSON.stringify(BUILT_LOCK)};
try { lockDataDir(${JSON.stringify(dataDir)}); console.log("locked"); } catch (error) { console.log(error.message); }`,
        ],
        { encoding: "utf8" },
      ).stdout.trim();
    expect(takeIt()).toBe(
      `the data dir ${dataDir} is in use by another verifyd server: one server serves a data dir`,
    );
    // a second server within this process is refused too, unless it asks to share (tests do)
    await expect(createTestServer({ dataDir })).rejects.toThrow(DataDirInUse);
    servers.push(await createTestServer({ dataDir, shareDataDir: true }));
    for (const server of servers.splice(0)) await server.close();
    expect(takeIt()).toBe("locked");
  });

  it("is given back by a start that fails, so this process can start again", async () => {
    const dataDir = tempDir();
    const busy = createServer();
    await new Promise<void>((resolve) => busy.listen(0, "127.0.0.1", resolve));
    const { port } = busy.address() as AddressInfo;
    const config = loadConfig({
      VERIFYD_DATA_DIR: dataDir,
      VERIFYD_PORT: String(port),
      VERIFYD_LOG_LEVEL: "silent",
    });
    const logger = createLogger({ level: "silent", devCodes: false });
    try {
      await expect(startServer(config, logger)).rejects.toThrow(/EADDRINUSE/);
    } finally {
      busy.close();
    }
    servers.push(await createTestServer({ dataDir }));
  });

  it("is free again once the process holding it was killed", async () => {
    const dataDir = tempDir();
    // A process that takes the lock, says so, and waits to be killed.
    const holder = spawn(
      process.execPath,
      [
        "--input-type=module",
        "-e",
        `import Database from "better-sqlite3";
const lock = new Database(${JSON.stringify(join(dataDir, "verifyd.lock"))}, { timeout: 0 });
lock.pragma("locking_mode = EXCLUSIVE");
lock.exec("BEGIN EXCLUSIVE");
console.log("locked");
setInterval(() => {}, 1000);`,
      ],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    await new Promise((resolve) => holder.stdout.once("data", resolve));
    expect(() => lockDataDir(dataDir)).toThrow(DataDirInUse);
    holder.kill("SIGKILL");
    await new Promise((resolve) => holder.once("exit", resolve));
    lockDataDir(dataDir).release();
  });
});
