import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { Logger, SendLogEntry } from "../../core/ports.js";
import { SEND_LOG_FLUSH_BATCH_ENTRIES } from "../send-log-buffer.js";
import { createGroupCommit } from "./group-commit.js";
import { openSqliteDatabase, type SqliteDatabase } from "./sqlite-database.js";
import { createSqliteSendLog } from "./sqlite-send-log.js";

const NOW = Date.UTC(2026, 0, 1, 12, 0, 0);

function recordingLogger() {
  const lines: { level: string; object: object; message?: string | undefined }[] = [];
  const at =
    (level: string) =>
    (object: object, message?: string): void => {
      lines.push({ level, object, message });
    };
  const logger: Logger = { debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error") };
  return { logger, lines };
}

function entry(overrides: Partial<SendLogEntry> = {}): SendLogEntry {
  return {
    atMs: NOW,
    appId: "shop",
    face: "native",
    channel: "sms",
    to: "+86*******00",
    purpose: "sign_in",
    decision: "accepted",
    ...overrides,
  };
}

let db: SqliteDatabase;
let log: ReturnType<typeof createSqliteSendLog>;
let lines: ReturnType<typeof recordingLogger>["lines"];

function rowsWritten(): number {
  return (db.prepare("SELECT count(*) AS n FROM send_log").get() as { n: number }).n;
}

beforeEach(() => {
  db = openSqliteDatabase({ path: ":memory:" });
  const recorder = recordingLogger();
  lines = recorder.lines;
  log = createSqliteSendLog(db, createGroupCommit(db), recorder.logger);
});
afterEach(async () => {
  await log.close();
  db.close();
  vi.useRealTimers();
});

describe("record and query", () => {
  it("buffers on record (nothing written on the request path) and writes on query", async () => {
    log.record(entry());
    expect(rowsWritten()).toBe(0);
    expect(await log.query({ appId: "shop", limit: 10 })).toEqual([entry()]);
    expect(rowsWritten()).toBe(1);
  });

  it("keeps every field of a decision, the shadowed rules as a list", async () => {
    const full = entry({
      country: "GB",
      ip: "203.0.113.7",
      deviceId: "device-1",
      reason: "sms_prefix_+44740:5/3600s",
      shadowed: ["country_not_allowed:NG", "sms_daily_budget:4/86400s"],
      verificationId: "vf_123",
    });
    log.record(full);
    await log.flush();
    expect(await log.query({ appId: "shop", limit: 10 })).toEqual([full]);
  });

  it("returns the newest first, for one app, filtered by decision and time, up to the limit", async () => {
    log.record(entry({ atMs: NOW, decision: "accepted", verificationId: "vf_1" }));
    log.record(entry({ atMs: NOW + 1000, decision: "captcha_required", reason: "risk_ip:3/600s" }));
    log.record(entry({ atMs: NOW + 2000, decision: "denied", reason: "country_denied:NG" }));
    log.record(entry({ atMs: NOW + 2000, decision: "rate_limited", reason: "recipient:1/60s" }));
    log.record(entry({ atMs: NOW + 3000, decision: "captcha_failed", appId: "other" }));

    const all = await log.query({ appId: "shop", limit: 10 });
    expect(all.map((each) => each.decision)).toEqual([
      "rate_limited",
      "denied",
      "captcha_required",
      "accepted",
    ]);
    expect(
      (await log.query({ appId: "shop", decision: "denied", limit: 10 })).map((each) => each.reason),
    ).toEqual(["country_denied:NG"]);
    expect(await log.query({ appId: "shop", sinceMs: NOW + 1000, limit: 10 })).toHaveLength(3);
    expect(await log.query({ appId: "shop", limit: 2 })).toHaveLength(2);
    expect((await log.query({ appId: "other", limit: 10 })).map((each) => each.decision)).toEqual([
      "captcha_failed",
    ]);
  });
});

describe("batching", () => {
  it("writes on its timer, once a second", async () => {
    // only the timer is faked: the group commit writes on the next real turn of the event loop
    vi.useFakeTimers({ toFake: ["setInterval", "clearInterval"] });
    const nextTurn = () => new Promise((resolve) => setImmediate(resolve));
    const timed = createSqliteSendLog(db, createGroupCommit(db), recordingLogger().logger);
    timed.record(entry());
    vi.advanceTimersByTime(999);
    await nextTurn();
    expect(rowsWritten()).toBe(0);
    vi.advanceTimersByTime(1);
    await nextTurn();
    expect(rowsWritten()).toBe(1);
    await timed.close();
  });

  it("writes a full batch soon, without waiting for the timer", async () => {
    for (let n = 0; n < SEND_LOG_FLUSH_BATCH_ENTRIES; n++) log.record(entry({ atMs: NOW + n }));
    expect(rowsWritten()).toBe(0);
    // one turn to take the batch, one for the group commit that writes it
    await new Promise((resolve) => setImmediate(resolve));
    await new Promise((resolve) => setImmediate(resolve));
    expect(rowsWritten()).toBe(SEND_LOG_FLUSH_BATCH_ENTRIES);
  });

  // The oldest tenth at once: dropping them one by one moved the whole array per entry recorded.
  it("drops the oldest tenth past 50,000 unwritten entries, and says how many", async () => {
    for (let n = 0; n <= 50_000; n++) log.record(entry({ atMs: NOW + n }));
    await log.flush();
    expect(rowsWritten()).toBe(45_001);
    const [oldest] = db.prepare("SELECT min(at) AS at FROM send_log").all() as { at: number }[];
    expect(oldest?.at).toBe(NOW + 5_000);
    expect(lines).toEqual([
      {
        level: "warn",
        object: { dropped: 5_000 },
        message: "send log buffer overflowed; oldest entries dropped",
      },
    ]);
  });

  it("logs a failed write instead of failing anyone", async () => {
    log.record(entry({ atMs: { not: "a number" } as unknown as number }));
    await expect(log.flush()).resolves.toBeUndefined();
    expect(lines).toEqual([
      { level: "error", object: { err: expect.any(Error), entries: 1 }, message: "send log write failed" },
    ]);
    // the log keeps working afterwards
    log.record(entry());
    expect(await log.query({ appId: "shop", limit: 10 })).toHaveLength(1);
  });

  it("writes what is buffered on close", async () => {
    log.record(entry());
    await log.close();
    expect(rowsWritten()).toBe(1);
  });
});

describe("while the file refuses writes", () => {
  // A write that failed (a full disk here; PostgreSQL unreachable in cluster mode) lost its whole
  // batch: nothing of it was there after recovery.
  it("keeps every entry and writes it once the store is back, logging the outage once", async () => {
    const dir = mkdtempSync(join(tmpdir(), "verifyd-send-log-"));
    const file = openSqliteDatabase({ path: join(dir, "verifyd.db") });
    const recorder = recordingLogger();
    const onFile = createSqliteSendLog(file, createGroupCommit(file), recorder.logger);
    const count = () => (file.prepare("SELECT count(*) AS n FROM send_log").get() as { n: number }).n;
    try {
      // a file SQLite may not grow past: SQLITE_FULL, as on a full disk
      file.pragma(`max_page_count = ${file.pragma("page_count", { simple: true })}`);
      const many = (from: number) => {
        for (let n = from; n < from + 2_000; n++)
          onFile.record(entry({ atMs: NOW + n, verificationId: `vf_${n}` }));
      };
      many(0);
      await onFile.flush();
      many(2_000);
      // the timer's next ticks find the store still failing
      await onFile.flush();
      await onFile.flush();
      expect(count()).toBe(0);
      // one line, of the first batch (2,000 entries: a write takes at most so many) and all kept
      expect(recorder.lines).toMatchObject([{ level: "error", object: { entries: 2_000, kept: 2_000 } }]);

      file.pragma("max_page_count = 1073741823");
      await onFile.flush();
      expect(count()).toBe(4_000);
      const written = file.prepare("SELECT at FROM send_log ORDER BY id").all() as { at: number }[];
      expect(written.map((row) => row.at - NOW)).toEqual(Array.from({ length: 4_000 }, (_, n) => n));
      expect(recorder.lines.slice(1)).toEqual([
        { level: "info", object: { dropped: 0 }, message: "send log writes resumed" },
      ]);
    } finally {
      await onFile.close();
      file.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
