import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "./config/load.js";
import { isLoopback, resolveSecrets } from "./server.js";

const parent = mkdtempSync(join(tmpdir(), "verifyd-dev-secret-"));
afterAll(() => rmSync(parent, { recursive: true, force: true }));

const devConfig = (dataDir: string) => loadConfig({ VERIFYD_DATA_DIR: dataDir });

describe("dev mode's generated secret", () => {
  it("is made once, its owner's alone, and read back the same", () => {
    const dataDir = join(parent, "fresh");
    const [first] = resolveSecrets(devConfig(dataDir));
    expect(first).toMatch(/^[\w-]{43}$/);
    expect(statSync(join(dataDir, "dev-secret")).mode & 0o777).toBe(0o600);
    expect(resolveSecrets(devConfig(dataDir))).toEqual([first]);
  });

  // Regression: an empty file (a write cut short by a full disk) was taken as the secret, so every
  // code's hash and every sealed setting was keyed by the empty string.
  it.each([
    ["empty", ""],
    ["short", "abc\n"],
  ])("refuses a file that is %s, naming the data dir", (_, content) => {
    const dataDir = mkdtempSync(join(parent, "cut-"));
    writeFileSync(join(dataDir, "dev-secret"), content);
    expect(() => resolveSecrets(devConfig(dataDir))).toThrow(ConfigError);
    expect(() => resolveSecrets(devConfig(dataDir))).toThrow(
      /VERIFYD_DATA_DIR \(dataDir\): .*dev-secret holds \d characters/,
    );
  });
});

// Regression: only the spellings 127.0.0.1, ::1 and localhost counted, so dev mode warned that
// 127.0.0.2 was reachable from beyond the machine.
describe("isLoopback (dev mode warns of any other listening address)", () => {
  it.each([
    "127.0.0.1",
    "127.0.0.2",
    "127.255.0.9",
    "::1",
    "0:0:0:0:0:0:0:1",
    "::ffff:127.0.0.2",
    "localhost",
  ])("%s is loopback", (host) => expect(isLoopback(host)).toBe(true));
  it.each(["0.0.0.0", "::", "10.0.0.1", "128.0.0.1", "::2", "::ffff:10.0.0.1", "example.com"])(
    "%s is not",
    (host) => expect(isLoopback(host)).toBe(false),
  );
});
