import type pg from "pg";

/**
 * Holds the outbox commits of the cluster server whose schema `db` reads, as a slow database
 * would: a send under way has its code in Redis and waits for its row. `sendWaiting` resolves once
 * a send waits on the hold (a fixed sleep could let the next request come first on a loaded
 * machine, and wait on the hold itself); `release` lets the commits through.
 */
export async function holdOutboxCommits(db: pg.Client) {
  await db.query("BEGIN");
  await db.query("LOCK TABLE outbox IN EXCLUSIVE MODE");
  return {
    async sendWaiting(): Promise<void> {
      for (let waited = 0; ; waited += 20) {
        const { rows } = await db.query(
          "SELECT count(*)::int AS n FROM pg_locks WHERE relation = 'outbox'::regclass AND NOT granted",
        );
        if (rows[0].n > 0) return;
        if (waited > 10_000) throw new Error("no send reached the outbox commit");
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    },
    async release(): Promise<void> {
      await db.query("COMMIT");
    },
  };
}
