import { afterEach, describe, expect, it } from "vitest";
import { newTimeOrderedSecret, timeOrderedSecretKey } from "../../core/ids.js";
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

  it("removes expired tokens by their key, more than a batch over several purges, and keeps live ones", async () => {
    backend = createSqliteBackend({ path: ":memory:" });
    const insert = backend.db.prepare(
      "INSERT INTO tokens (token_hash, app_id, verification_id, channel, recipient, purposes, expires_at) VALUES (?, 'default', 'vf', 'email', 'a@b.co', 'sign_in', ?)",
    );
    const now = 1_800_000_000_000;
    /** a token's key as core mints it: timed by its expiry */
    const tokenKey = (expiresAtMs: number) => timeOrderedSecretKey(newTimeOrderedSecret("vt", expiresAtMs));
    const live = tokenKey(now + 1_000);
    // timed by its approval, as tokens were before: expired, and one still live
    const olderExpired = tokenKey(now - 700_000);
    const olderLive = tokenKey(now - 300_000);
    backend.db.transaction(() => {
      for (let i = 0; i < 700; i++) insert.run(tokenKey(now - 1_000 - i), now - 1_000 - i);
      insert.run(live, now + 1_000);
      insert.run(olderExpired, now - 100_000);
      insert.run(olderLive, now + 300_000);
    })();
    await backend.purge(now);
    expect(count("tokens")).toBe(703 - 500);
    await backend.purge(now);
    const left = backend.db.prepare("SELECT token_hash FROM tokens ORDER BY token_hash").all();
    expect(left).toEqual([{ token_hash: olderLive }, { token_hash: live }]);
  });

  it("removes expired idempotency keys but not live ones", async () => {
    backend = createSqliteBackend({ path: ":memory:" });
    const insert = backend.db.prepare(
      "INSERT INTO idempotency (app_id, key, verification_id, fingerprint, resend_after, expires_at) VALUES ('default', ?, 'vf', 'f', 0, ?)",
    );
    insert.run("old", 1_000);
    insert.run("live", 10_000);
    await backend.purge(5_000);
    expect(backend.db.prepare("SELECT key FROM idempotency").all()).toEqual([{ key: "live" }]);
  });
});
