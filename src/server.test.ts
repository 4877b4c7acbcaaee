import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";

// A failure late in assembleServer, once delivery is assembled (its providers connect as they are
// made): the HTTP app cannot be built. Nothing of ours fails there naturally, so it is injected.
vi.mock("./http/app.js", () => ({
  buildHttpApp: async () => {
    throw new Error("the HTTP app could not be built");
  },
}));

const { loadConfig } = await import("./config/load.js");
const { createLogger } = await import("./observability/logger.js");
const { assembleServer } = await import("./server.js");

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

describe("a server whose assembly fails", () => {
  it("stops what it had made (an SMPP session) and gives the store and the data dir back", async () => {
    // A stand-in SMSC that counts the connections it gets and how many are still open.
    const open = new Set<Socket>();
    const smsc = createServer((socket) => {
      open.add(socket);
      socket.on("close", () => open.delete(socket));
      socket.on("error", () => {});
    });
    await new Promise<void>((resolve) => smsc.listen(0, "127.0.0.1", resolve));
    const { port } = smsc.address() as { port: number };
    const dir = mkdtempSync(join(tmpdir(), "verifyd-assemble-"));
    dirs.push(dir);
    const configFile = join(dir, "verifyd.json");
    writeFileSync(
      configFile,
      JSON.stringify({
        providers: [
          {
            id: "smsc",
            type: "smpp",
            url: `smpp://127.0.0.1:${port}`,
            systemId: "verifyd",
            password: "secret1",
            sourceAddr: "Shop",
          },
        ],
      }),
    );
    const env = {
      VERIFYD_DATA_DIR: join(dir, "data"),
      VERIFYD_CONFIG: configFile,
      VERIFYD_LOG_LEVEL: "silent",
    };
    const logger = createLogger({ level: "silent", devCodes: false });
    try {
      await expect(assembleServer({ config: loadConfig(env), logger })).rejects.toThrow(
        "the HTTP app could not be built",
      );
      // the data dir was given back: a second try gets past its lock to the same failure
      await expect(assembleServer({ config: loadConfig(env), logger, senders: { sms: [] } })).rejects.toThrow(
        "the HTTP app could not be built",
      );
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      expect(open.size).toBe(0);
    } finally {
      for (const socket of open) socket.destroy();
      smsc.close();
    }
  });
});
