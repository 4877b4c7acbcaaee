import { describe, expect, it } from "vitest";
import type { SendLogEntry } from "../core/ports.js";
import { SEND_LOG_FLUSH_BATCH_ENTRIES, SendLogBuffer } from "./send-log-buffer.js";

const refusal = (ip: string, atMs = 1): SendLogEntry => ({
  atMs,
  appId: "app",
  face: "native",
  ip,
  decision: "captcha_required",
  reason: "risk_ip:3/600s",
});

describe("SendLogBuffer", () => {
  it("merges each client's repeated refusals, interleaved or not, into its first entry", () => {
    const buffer = new SendLogBuffer();
    for (const ip of ["a", "a", "b", "a", "b", "b", "c"]) buffer.record(refusal(ip));
    buffer.record({ ...refusal("a"), reason: "risk_subnet:10/600s" });
    expect(buffer.take().entries.map((entry) => [entry.ip, entry.reason, entry.count ?? 1])).toEqual([
      ["a", "risk_ip:3/600s", 3],
      ["b", "risk_ip:3/600s", 3],
      ["c", "risk_ip:3/600s", 1],
      ["a", "risk_subnet:10/600s", 1],
    ]);
  });

  it("never merges decisions about a recipient, and starts afresh after a take", () => {
    const buffer = new SendLogBuffer();
    const about = { ...refusal("a"), channel: "email" as const, to: "a***@example.com" };
    buffer.record(about);
    buffer.record(about);
    buffer.record(refusal("a"));
    expect(buffer.take().entries).toHaveLength(3);
    buffer.record(refusal("a"));
    expect(buffer.take().entries).toEqual([refusal("a")]);
  });

  it("asks for a write once per full batch, and never mutates the caller's entry", () => {
    const buffer = new SendLogBuffer();
    const first = refusal("x");
    buffer.record(first);
    buffer.record(refusal("x"));
    expect(first.count).toBeUndefined();
    const full = Array.from({ length: 600 }, (_, i) => buffer.record({ ...refusal("y"), to: `r${i}` }));
    expect(full.filter(Boolean)).toHaveLength(1);
    // the merged pair is the batch's first entry
    expect(full.indexOf(true) + 2).toBe(SEND_LOG_FLUSH_BATCH_ENTRIES);
  });

  it("waits for a larger batch where the adapter asks", () => {
    const buffer = new SendLogBuffer(500);
    const full = Array.from({ length: 600 }, (_, i) => buffer.record({ ...refusal("y"), to: `r${i}` }));
    expect(full.indexOf(true) + 1).toBe(500);
  });

  // Regression: a merged entry dropped at the cap counted as one decision, however many it stood
  // for. @see fix review 3 4
  it("counts every decision a dropped entry stood for", () => {
    const buffer = new SendLogBuffer();
    for (let n = 0; n < 1_000; n++) buffer.record(refusal("203.0.113.9"));
    for (let n = 0; n < 50_000; n++) {
      buffer.record({ ...refusal("198.51.100.1", n), to: `user${n}@example.com`, channel: "email" });
    }
    const { entries, dropped } = buffer.take();
    expect(entries).toHaveLength(45_001);
    expect(dropped).toBe(1_000 + 4_999);
  });

  it("puts a failed write's entries back ahead of newer ones, dropping the oldest past its cap", () => {
    const buffer = new SendLogBuffer();
    const about = (n: number): SendLogEntry => ({ ...refusal("z", n), to: `r${n}` });
    for (let n = 0; n < 3; n++) buffer.record(about(n));
    const failed = buffer.take().entries;
    for (let n = 3; n < 5; n++) buffer.record(about(n));
    buffer.putBack(failed);
    expect(buffer.take().entries.map((entry) => entry.atMs)).toEqual([0, 1, 2, 3, 4]);

    for (let n = 0; n < 49_999; n++) buffer.record(about(100 + n));
    buffer.putBack([about(10), about(11), about(12)]);
    expect(buffer.size).toBe(50_000);
    const { entries, dropped } = buffer.take();
    expect(dropped).toBe(2);
    expect(entries[0]?.atMs).toBe(12);
  });
});
