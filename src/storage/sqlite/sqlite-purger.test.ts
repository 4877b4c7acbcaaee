import { afterEach, describe, expect, it } from "vitest";
import { createSqliteBackend, type SqliteBackend } from "./index.js";

let backend: SqliteBackend;
afterEach(() => backend?.close());

const count = (table: string) =>
  (backend.db.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n;

describe("purger", () => {
  it("sweeps expired counters slice by slice and keeps the live ones", async () => {
    backend = createSqliteBackend({ path: ":memory:" });
    const now = 1_000_000_000;
    for (let i = 0; i < 5_000; i++) await backend.counters.hit("default", `k${i}`, i % 2 ? 10 : 100_000, now);
    // 5,000 counters in slices of 500: ten purges cover them all.
    for (let run = 0; run < 10; run++) await backend.purge(now + 20_000);
    expect(count("counters")).toBe(2_500);
    expect((await backend.counters.peek("default", "k2", now + 20_000)).count).toBe(1);
  });

  it("removes expired tokens and idempotency keys but not live ones", async () => {
    backend = createSqliteBackend({ path: ":memory:" });
    const insert = backend.db.prepare(
      "INSERT INTO tokens (token_hash, app_id, verification_id, channel, recipient, purposes, expires_at) VALUES (?, 'default', 'vf', 'email', 'a@b.co', 'sign_in', ?)",
    );
    insert.run("old", 1_000);
    insert.run("live", 10_000);
    await backend.purge(5_000);
    expect(backend.db.prepare("SELECT token_hash FROM tokens").all()).toEqual([{ token_hash: "live" }]);
  });
});
