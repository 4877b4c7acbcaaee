import { describe, expect, it } from "vitest";
import { backendMissing, probePostgres } from "../../../test/cluster/backends.js";
import { poolOnOwnSchema } from "../../../test/cluster/schema-pool.js";
import { POSTGRES_MIGRATIONS } from "../migrations/postgres/index.js";
import { migratePostgres } from "./postgres-migrator.js";
import { createPostgresPurger } from "./postgres-purger.js";

const DAY_MS = 86_400_000;

const probe = await probePostgres();
if (!probe.ok) {
  backendMissing("postgres migrations and purge", probe.reason);
} else {
  const url = probe.url;
  describe("postgres migrations and purge", () => {
    const { schema, pool } = poolOnOwnSchema(url, "pg", 4);

    it("migrates once even when several processes start together", async () => {
      const runs = await Promise.all([1, 2, 3].map(() => migratePostgres(pool(), schema)));
      expect(runs.flat()).toEqual(POSTGRES_MIGRATIONS.map((migration) => migration.version));
      expect(await migratePostgres(pool(), schema)).toEqual([]);
    });

    it("deletes only what outlived its keep time, and keeps queued messages", async () => {
      const now = Date.now();
      const old = now - 40 * DAY_MS;
      await pool().query(
        `INSERT INTO outbox (id, app_id, verification_id, channel, recipient, purpose, locale, created_at, deliver_before,
           next_attempt_at, status)
         VALUES ('sent-old', 'a', 'v', 'email', 'x', 'sign_in', 'en', $1, $1, $1, 'sent'),
                ('queued-old', 'a', 'v', 'email', 'x', 'sign_in', 'en', $1, $1, $1, 'queued'),
                ('sent-new', 'a', 'v', 'email', 'x', 'sign_in', 'en', $2, $2, $2, 'sent')`,
        [old, now],
      );
      await pool().query(
        `INSERT INTO sessions (token_hash, app_id, account_id, expires_at) VALUES ('gone', 'a', 'x', $1), ('live', 'a', 'x', $2)`,
        [now - 1, now + DAY_MS],
      );
      const purge = createPostgresPurger(pool());
      expect(await purge(now)).toMatchObject({ removed: 2, more: false });
      const { rows } = await pool().query<{ id: string }>("SELECT id FROM outbox ORDER BY id");
      expect(rows.map((row) => row.id)).toEqual(["queued-old", "sent-new"]);
      expect(await purge(now)).toMatchObject({ removed: 0, more: false });
    });

    it("says there is more while a batch comes back full", async () => {
      const now = Date.now();
      await pool().query(
        `INSERT INTO outbox (id, app_id, verification_id, channel, recipient, purpose, locale, created_at, deliver_before,
           next_attempt_at, status)
         SELECT 'bulk-' || n, 'a', 'v', 'email', 'x', 'sign_in', 'en', $1, $1, $1, 'sent' FROM generate_series(1, 2001) AS n`,
        [now - 40 * DAY_MS],
      );
      const purge = createPostgresPurger(pool());
      expect(await purge(now)).toMatchObject({ removed: 2_000, more: true });
      expect(await purge(now)).toMatchObject({ removed: 1, more: false });
    });
  });
}
