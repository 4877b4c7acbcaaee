import { chmodSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { createSqliteBackend } from "./index.js";
import { openToOthers } from "./private-files.js";

const parent = mkdtempSync(join(tmpdir(), "verifyd-private-files-"));
afterAll(() => rmSync(parent, { recursive: true, force: true }));

const modeOf = (path: string) => statSync(path).mode & 0o777;

// Regression: under the usual umask (022) the data dir was 0755 and the database, its WAL and
// shared memory 0644, so any local user could read every address and, in dev mode, every code.
describe("the embedded store's files", () => {
  it("are its owner's alone when it creates them, whatever the umask", async () => {
    const previous = process.umask(0o022);
    try {
      const dataDir = join(parent, "new", "data");
      const path = join(dataDir, "verifyd.db");
      const backend = createSqliteBackend({ path });
      await backend.devInbox.add({
        id: "msg_private",
        appId: "default",
        channel: "email",
        to: "ann@example.com",
        subject: "Your code",
        text: "Your code is 123456",
        code: "123456",
        createdAtMs: Date.now(),
      });
      expect(modeOf(dataDir)).toBe(0o700);
      for (const file of [path, `${path}-wal`, `${path}-shm`]) expect(modeOf(file), file).toBe(0o600);
      await backend.close();
    } finally {
      process.umask(previous);
    }
  });
});

// An earlier version's data dir keeps its modes (an operator's choice is kept too): a start warns
// of the ones other local users may read or write.
describe("openToOthers", () => {
  it("names the paths with group or world bits, with their modes, and skips missing ones", () => {
    const dir = join(parent, "older");
    mkdirSync(dir);
    chmodSync(dir, 0o755);
    const db = join(dir, "verifyd.db");
    writeFileSync(db, "");
    chmodSync(db, 0o644);
    const own = join(dir, "own");
    writeFileSync(own, "");
    chmodSync(own, 0o600);
    expect(openToOthers([dir, db, own, join(dir, "missing")])).toEqual([
      { path: dir, mode: "0755" },
      { path: db, mode: "0644" },
    ]);
  });
});
