import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { eventually, killAll, postJson, startServer } from "../../../test/e2e/verifyd-process.js";

// Regression: with the data dir deleted under a running server (or only its verifyd.lock), the
// server went on answering 201 to sends written to a deleted file (404 after a restart), its
// delivery thread recreated an empty verifyd.db, and a second server could take the dir while the
// first still served it. @see .scratch reviewer, storage 1
const dirs: string[] = [];
afterAll(async () => {
  await killAll();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

async function serving() {
  const dataDir = mkdtempSync(join(tmpdir(), "verifyd-gone-"));
  dirs.push(dataDir);
  const server = await startServer({ VERIFYD_DATA_DIR: dataDir });
  let n = 0;
  const send = () =>
    postJson(`${server.url}/v1/verifications`, {
      channel: "email",
      to: `r${++n}@example.com`,
      purpose: "sign_in",
    });
  expect((await send()).status).toBe(201);
  return { dataDir, server, send };
}

describe.concurrent("a store whose files are deleted under the server", () => {
  it.for([
    ["the data dir", "", "verifyd.db"],
    ["only verifyd.lock", "verifyd.lock", "verifyd.lock"],
  ] as const)("takes no more sends and stops (exit 1) once %s is deleted", async ([, target, named]) => {
    const { dataDir, server, send } = await serving();
    const exited = new Promise<number | null>((resolve) => server.child.once("exit", resolve));
    rmSync(join(dataDir, target), { recursive: true, force: true });
    const deletedAt = Date.now();
    const said = `${join(dataDir, named)} was deleted while this server had it open`;
    await eventually(async () => (server.output().includes(said) ? true : undefined), 5_000, said);
    expect(Date.now() - deletedAt).toBeLessThan(2_500);
    // refused (503) while it stops, or no longer listening: never taken
    const refused = await send().catch(() => ({ status: 0, body: {} }));
    expect([0, 503]).toContain(refused.status);
    // Regression: it stayed up, not ready for good, its delivery thread still claiming, so no
    // supervisor started it again and a second server could take the dir beside it.
    // @see own-commit review 4 (session 24) 2, 3
    expect(await exited).toBe(1);
  });
});
