import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { backendMissing, dropSchema, probePostgres, uniqueName } from "../../../test/cluster/backends.js";
import { startTcpProxy, type TcpProxy } from "../../../test/servers/tcp-proxy.js";
import type { Logger, SendLogEntry } from "../../core/ports.js";
import { migratePostgres } from "./postgres-migrator.js";
import { createPostgresPool } from "./postgres-pool.js";
import { createPostgresSendLog } from "./postgres-send-log.js";

const NOW = Date.UTC(2026, 0, 1, 12, 0, 0);
const silent: Logger = { debug() {}, info() {}, warn() {}, error() {} };

const entry = (n: number): SendLogEntry => ({
  atMs: NOW + n,
  appId: "shop",
  face: "native",
  channel: "sms",
  to: "+86*******00",
  purpose: "sign_in",
  decision: "accepted",
  verificationId: `vf_${n}`,
});

const probe = await probePostgres();
if (!probe.ok) {
  backendMissing("postgres send log", probe.reason);
} else {
  const url = probe.url;
  describe("postgres send log", () => {
    const schema = uniqueName("sendlog");
    // The send log reaches PostgreSQL through a proxy the test cuts; the test reads it directly.
    let proxy: TcpProxy;
    const direct = createPostgresPool({ url, poolSize: 1, schema, logger: silent });
    beforeAll(async () => {
      await migratePostgres(direct, schema);
      const target = new URL(url);
      proxy = await startTcpProxy({
        host: target.hostname || "127.0.0.1",
        port: Number(target.port || 5432),
      });
    });
    afterAll(async () => {
      await proxy?.close();
      await direct.end();
      await dropSchema(url, schema);
    });

    // A batch written while PostgreSQL was briefly unreachable was lost whole: 0 rows after recovery.
    it("keeps every entry while PostgreSQL is unreachable and writes it on recovery, logging the outage once", async () => {
      const through = new URL(url);
      through.hostname = "127.0.0.1";
      through.port = String(proxy.port);
      const pool = createPostgresPool({ url: through.toString(), poolSize: 2, schema, logger: silent });
      const lines: { level: string; object: object; message?: string | undefined }[] = [];
      const at = (level: string) => (object: object, message?: string) => {
        lines.push({ level, object, message });
      };
      const log = createPostgresSendLog(pool, {
        debug() {},
        info: at("info"),
        warn: at("warn"),
        error: at("error"),
      });
      const rows = async () =>
        (await direct.query<{ at: number }>("SELECT at FROM send_log ORDER BY id")).rows.map(
          (row) => row.at - NOW,
        );
      try {
        log.record(entry(0));
        await log.flush();
        expect(await rows()).toEqual([0]);

        proxy.cut();
        for (let n = 1; n <= 300; n++) log.record(entry(n));
        await log.flush();
        for (let n = 301; n <= 600; n++) log.record(entry(n));
        // the timer's next ticks find it still away
        await log.flush();
        await log.flush();
        expect(await rows()).toEqual([0]);
        expect(lines).toMatchObject([{ level: "error", object: { entries: 300 } }]);

        proxy.restore();
        await log.flush();
        expect(await rows()).toEqual(Array.from({ length: 601 }, (_, n) => n));
        expect(lines.slice(1)).toEqual([
          { level: "info", object: { dropped: 0 }, message: "send log writes resumed" },
        ]);
      } finally {
        await log.close();
        await pool.end();
      }
    });
  });
}
