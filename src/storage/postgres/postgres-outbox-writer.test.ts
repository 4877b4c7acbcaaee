import { beforeAll, describe, expect, it } from "vitest";
import { backendMissing, probePostgres } from "../../../test/cluster/backends.js";
import { poolOnOwnSchema } from "../../../test/cluster/schema-pool.js";
import { baseTime, codeRecord, outboxFor } from "../contract/fixtures.contract.js";
import { migratePostgres } from "./postgres-migrator.js";
import { createPostgresOutboxWriter, OutboxRowsNotSent } from "./postgres-outbox-writer.js";

const probe = await probePostgres();
if (!probe.ok) {
  backendMissing("postgres outbox writer", probe.reason);
} else {
  const url = probe.url;
  describe("postgres outbox writer", () => {
    const { schema, pool } = poolOnOwnSchema(url, "writer", 4);
    beforeAll(async () => {
      await migratePostgres(pool(), schema);
    });

    // A send whose commit's reply was lost has its row written again: exactly one row must come of
    // it whether the first commit happened or not. @see .scratch/idem/t4.mjs
    it("requeues a row once, whether its first commit happened or not, and a duplicate fails none of its batch", async () => {
      const writer = createPostgresOutboxWriter(pool(), { maxConcurrentCommits: 2 });
      const now = baseTime();
      const committed = outboxFor(codeRecord("app", now));
      const lost = outboxFor(codeRecord("app", now));
      await writer.enqueue(committed);
      // Handed in together, so they share one statement; the committed row's copy differs in
      // nothing but must not be written twice, nor fail the others.
      await Promise.all([
        writer.requeue({ ...committed, sealedCode: "changed" }),
        writer.requeue(lost),
        writer.requeue(lost),
      ]);
      const { rows } = await pool().query<{ id: string; sealed_code: string }>(
        "SELECT id, sealed_code FROM outbox WHERE id = ANY($1)",
        [[committed.id, lost.id]],
      );
      expect(rows).toHaveLength(2);
      expect(Object.fromEntries(rows.map((row) => [row.id, row.sealed_code]))).toEqual({
        [committed.id]: committed.sealedCode,
        [lost.id]: lost.sealedCode,
      });
      // A send's own enqueue of a row that exists still fails: requeues never go into its batches.
      await expect(writer.enqueue(lost)).rejects.toMatchObject({ code: "23505" });
      await writer.drain();
    });

    // Behind batches that stall (each up to its statement and client timeouts, ~6 s; more rows
    // queued than the batches in flight take, 500 each, wait for several rounds of them), a send
    // could wait past its idempotency entry's 30 s, and a retry be sent a second code. A row queued
    // past the bound is refused unsent; one handed in since is still written. (A lock stands in for
    // the stall here.)
    it("refuses a row queued past its wait bound unsent, and writes the rows handed in since", async () => {
      const writer = createPostgresOutboxWriter(pool(), { maxConcurrentCommits: 1, maxWaitMs: 300 });
      const now = baseTime();
      const [first, stale, fresh] = [1, 2, 3].map(() => outboxFor(codeRecord("app", now)));
      if (!first || !stale || !fresh) throw new Error("three rows");
      const locker = await pool().connect();
      try {
        await locker.query("BEGIN");
        await locker.query("LOCK TABLE outbox IN EXCLUSIVE MODE");
        const firstCommit = writer.enqueue(first); // in flight, waiting for the lock
        await new Promise((resolve) => setTimeout(resolve, 50));
        const staleCommit = writer.enqueue(stale); // queued behind it
        staleCommit.catch(() => {});
        await new Promise((resolve) => setTimeout(resolve, 400));
        const freshCommit = writer.enqueue(fresh);
        await locker.query("COMMIT");
        await firstCommit;
        await expect(staleCommit).rejects.toBeInstanceOf(OutboxRowsNotSent);
        await freshCommit;
      } finally {
        locker.release();
      }
      const { rows } = await pool().query<{ id: string }>("SELECT id FROM outbox WHERE id = ANY($1)", [
        [first.id, stale.id, fresh.id],
      ]);
      expect(rows.map((row) => row.id).sort()).toEqual([first.id, fresh.id].sort());
      await writer.drain();
    });
  });
}
