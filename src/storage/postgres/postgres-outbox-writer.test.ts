import { beforeAll, describe, expect, it } from "vitest";
import { backendMissing, probePostgres } from "../../../test/cluster/backends.js";
import { poolOnOwnSchema } from "../../../test/cluster/schema-pool.js";
import { baseTime, codeRecord, outboxFor } from "../contract/fixtures.contract.js";
import { migratePostgres } from "./postgres-migrator.js";
import { createPostgresOutboxWriter } from "./postgres-outbox-writer.js";

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
  });
}
