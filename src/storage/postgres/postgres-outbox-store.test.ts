import { beforeAll, describe, expect, it } from "vitest";
import { backendMissing, probePostgres } from "../../../test/cluster/backends.js";
import { poolOnOwnSchema } from "../../../test/cluster/schema-pool.js";
import type { OutboxMessage } from "../../core/types.js";
import { baseTime, codeRecord, outboxFor } from "../contract/fixtures.contract.js";
import { migratePostgres } from "./postgres-migrator.js";
import { createPostgresDeliveryList, createPostgresOutboxStore } from "./postgres-outbox-store.js";
import { createPostgresOutboxWriter } from "./postgres-outbox-writer.js";

const probe = await probePostgres();
if (!probe.ok) {
  backendMissing("postgres outbox store", probe.reason);
} else {
  const url = probe.url;
  describe("postgres outbox store", () => {
    const { schema, pool } = poolOnOwnSchema(url, "outbox_store", 4);
    beforeAll(async () => {
      await migratePostgres(pool(), schema);
    });

    // Regression: the worker writes a settle again when the store did not answer, and one whose
    // commit happened but whose reply was lost recorded its try twice in `deliveries`.
    it("records a try once when its settle is written again, whatever a receipt changed since", async () => {
      const outbox = createPostgresOutboxStore(pool());
      const deliveries = createPostgresDeliveryList(pool());
      const now = baseTime();
      const retried = outboxFor(codeRecord("app", now));
      const sent = outboxFor(codeRecord("app", now));
      const writer = createPostgresOutboxWriter(pool(), { maxConcurrentCommits: 1 });
      await writer.enqueue(retried);
      await writer.enqueue(sent);
      await writer.drain();
      const [first, second] = await outbox.claim(10, 30_000, now);
      if (!first || !second) throw new Error("not claimed");
      const failed = { provider: "gw", status: "failed", atMs: now + 1, error: "503" } as const;
      const ok = { provider: "gw", status: "sent", atMs: now + 2, providerMessageId: "g-1" } as const;
      const byId = new Map([first, second].map((message) => [message.id, message]));
      const retryClaim = byId.get(retried.id);
      const sentClaim = byId.get(sent.id);
      if (!retryClaim || !sentClaim) throw new Error("not claimed");
      await outbox.markRetry(retryClaim, failed, now + 1_000);
      await outbox.markSent(sentClaim, ok);
      // a receipt moves the sent try on before the settle is written again
      await outbox.recordReceipt("gw", "g-1", { provider: "gw", status: "delivered", atMs: now + 3 });
      await outbox.markRetry(retryClaim, failed, now + 1_000);
      await outbox.markSent(sentClaim, ok);
      expect(await deliveries("app", retried.verificationId)).toEqual([failed]);
      expect(await deliveries("app", sent.verificationId)).toEqual([
        { ...ok, status: "delivered", atMs: now + 3 },
      ]);
    });

    // Regression: a provider without ids of its own is named by our message id in every try, so a
    // second worker's real send, after the first one's lease lapsed, matched the first try's record
    // and went unrecorded: the double send the record exists to show. @see own-commit review 4 1
    it("records each real try of a provider that names a message by our id", async () => {
      const outbox = createPostgresOutboxStore(pool());
      const deliveries = createPostgresDeliveryList(pool());
      const now = baseTime();
      const message = outboxFor(codeRecord("app", now));
      const writer = createPostgresOutboxWriter(pool(), { maxConcurrentCommits: 1 });
      await writer.enqueue(message);
      await writer.drain();
      // (the schema holds the test above's messages too)
      const ours = (claimed: OutboxMessage[]) => claimed.find((claim) => claim.id === message.id);
      const first = ours(await outbox.claim(10, 1_000, now));
      const second = ours(await outbox.claim(10, 30_000, now + 5_000));
      if (!first || !second) throw new Error("not claimed");
      const tryOf = (atMs: number) =>
        ({ provider: "hook", status: "sent", atMs, providerMessageId: message.id }) as const;

      await outbox.markSent(second, tryOf(now + 5_100));
      await outbox.markSent(first, tryOf(now + 6_000));

      expect(await deliveries("app", message.verificationId)).toEqual([
        tryOf(now + 5_100),
        tryOf(now + 6_000),
      ]);
    });
  });
}
