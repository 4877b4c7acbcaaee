import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { afterEach, describe, expect, it } from "vitest";
import { loadConfig } from "./config/load.js";
import { createLogger } from "./observability/logger.js";
import { assembleServer } from "./server.js";

// A newcomer's production start: the `default` app always exists and the Fresns, CloudBase and
// IDaaS faces take no key, so it served them to anyone and nothing said so. @see README review 8
describe("a production start's warning about the keyless default app", () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  async function startupWarnings(apps: object[]): Promise<Record<string, unknown>[]> {
    const dir = mkdtempSync(join(tmpdir(), "verifyd-warnings-"));
    dirs.push(dir);
    const configFile = join(dir, "verifyd.json");
    writeFileSync(configFile, JSON.stringify({ apps }));
    const lines: Record<string, unknown>[] = [];
    const stream = new Writable({
      write(chunk, _encoding, done) {
        lines.push(JSON.parse(String(chunk)));
        done();
      },
    });
    const config = loadConfig({
      VERIFYD_MODE: "production",
      VERIFYD_SECRET: "a-production-secret-of-32-chars!",
      VERIFYD_DATA_DIR: join(dir, "data"),
      VERIFYD_CONFIG: configFile,
    });
    const server = await assembleServer({
      config,
      logger: createLogger({ level: "info", devCodes: false }, stream),
    });
    await server.close();
    return lines.filter((line) => line.level === 40);
  }
  const aboutDefault = (line: Record<string, unknown>) =>
    String(line.msg).startsWith("the `default` app serves");

  it("names the faces the enabled default app serves without a key, and how to disable it", async () => {
    const warnings = (await startupWarnings([])).filter(aboutDefault);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ appId: "default", faces: ["fresns", "cloudbase", "idaas"] });
    expect(warnings[0]?.msg).toContain('{"id": "default", "disabled": true}');
  });

  it("is not given once the default app is disabled, or serves only the native face", async () => {
    expect((await startupWarnings([{ id: "default", disabled: true }])).filter(aboutDefault)).toEqual([]);
    expect((await startupWarnings([{ id: "default", faces: ["native"] }])).filter(aboutDefault)).toEqual([]);
  });
});
