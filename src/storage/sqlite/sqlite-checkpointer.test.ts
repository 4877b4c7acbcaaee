import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { createSqliteBackend, type SqliteBackend } from "./index.js";

let backend: SqliteBackend | undefined;
let dir: string | undefined;
afterEach(async () => {
  await backend?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
  backend = undefined;
});

describe("background checkpoints", () => {
  it("copies committed WAL pages into the database file from a worker thread", async () => {
    dir = mkdtempSync(join(tmpdir(), "verifyd-checkpoint-"));
    const path = join(dir, "verifyd.db");
    backend = createSqliteBackend({ path });
    const errors: string[] = [];
    backend.startMaintenance?.((message) => errors.push(message));
    const sizeBefore = statSync(path).size;
    for (let i = 0; i < 3_000; i++) await backend.counters.hit("default", `key-${i}`, 3600, Date.now());
    // The request thread no longer checkpoints: until the worker does, the rows live in the WAL only.
    const deadline = Date.now() + 5_000;
    while (statSync(path).size === sizeBefore && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(statSync(path).size).toBeGreaterThan(sizeBefore);
    expect(errors).toEqual([]);
  });
});
