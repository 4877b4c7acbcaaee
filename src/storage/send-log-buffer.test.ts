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

  // Regression: a made-up captcha token (or a fresh Idempotency-Key) moved a refusal past the
  // pre-body check, and each one then wrote a row of its own. @see .scratch/abuse F3
  it("merges a client's repeated refusals of a recipient's own limit per recipient", () => {
    const buffer = new SendLogBuffer();
    const about = (to: string, atMs: number): SendLogEntry => ({
      ...refusal("a", atMs),
      channel: "email",
      to,
      purpose: "sign_in",
      decision: "rate_limited",
      reason: "recipient:1/60s",
    });
    for (let n = 0; n < 1_000; n += 1) buffer.record(about("b***@example.com", n));
    buffer.record(about("c***@example.com", 5));
    buffer.record({ ...about("b***@example.com", 6), deviceId: "device-2" });
    buffer.record(about("b***@example.com", 7));
    expect(buffer.take().entries.map((entry) => [entry.atMs, entry.to, entry.count ?? 1])).toEqual([
      [0, "b***@example.com", 1_001],
      [5, "c***@example.com", 1],
      [6, "b***@example.com", 1],
    ]);
  });

  // Regression: one client rotating recipients (or device ids) with a made-up captcha token wrote
  // a row per request, each refusal alike but for its recipient. @see the session-19 note
  it("merges a client's refusals about itself whatever the recipient, naming none it does not share", () => {
    const buffer = new SendLogBuffer();
    const failed = (n: number): SendLogEntry => ({
      ...refusal("a", n),
      channel: "email",
      to: `u${n}***@example.com`,
      purpose: "sign_in",
      deviceId: `device-${n}`,
      decision: "captcha_failed",
      reason: "The captcha token is invalid, expired or already used",
    });
    for (let n = 0; n < 1_000; n += 1) buffer.record(failed(n));
    const denied = (n: number): SendLogEntry => ({
      ...refusal("a", n),
      channel: "sms",
      to: `+234*******${n}`,
      country: "NG",
      decision: "denied",
      reason: "country_not_allowed:NG",
    });
    buffer.record(denied(1));
    buffer.record(denied(2));
    const limited = { ...failed(3), decision: "rate_limited" as const, reason: "ip:10/3600s" };
    buffer.record(limited);
    buffer.record({ ...limited, to: "other***@example.com" });
    const entries = buffer.take().entries;
    expect(entries.map((entry) => [entry.decision, entry.count ?? 1])).toEqual([
      ["captcha_failed", 1_000],
      ["denied", 2],
      ["rate_limited", 2],
    ]);
    // the recipients and devices differed: the merged entries name none of them
    expect(entries.map((entry) => [entry.to, entry.deviceId])).toEqual([
      [undefined, undefined],
      [undefined, undefined],
      [undefined, "device-3"],
    ]);
    expect(entries[1]?.country).toBe("NG");
  });

  it("keeps each accepted send, and each one shadow mode let through, one entry", () => {
    const buffer = new SendLogBuffer();
    const accepted: SendLogEntry = {
      ...refusal("a"),
      channel: "sms",
      to: "+86*********00",
      decision: "accepted",
      reason: undefined,
    };
    buffer.record(accepted);
    buffer.record(accepted);
    buffer.record({ ...accepted, verificationId: "vf_1" });
    buffer.record({ ...accepted, verificationId: "vf_1" });
    const shadowed = { ...refusal("a"), decision: "denied" as const, shadowed: ["country_not_allowed:NG"] };
    buffer.record(shadowed);
    buffer.record(shadowed);
    expect(buffer.take().entries.map((entry) => entry.count ?? 1)).toEqual([1, 1, 1, 1, 1, 1]);
  });

  it("never merges entries whose key alone matches, and starts afresh after a take", () => {
    const buffer = new SendLogBuffer();
    buffer.record({ ...refusal("a"), reason: "undefined" });
    buffer.record({ ...refusal("a"), reason: undefined });
    expect(buffer.take().entries).toHaveLength(2);
    buffer.record(refusal("a"));
    buffer.take();
    buffer.record(refusal("a"));
    expect(buffer.take().entries).toEqual([refusal("a")]);
  });

  it("asks for a write once per full batch, and never mutates the caller's entry", () => {
    const buffer = new SendLogBuffer();
    const first = refusal("x");
    buffer.record(first);
    buffer.record(refusal("x"));
    expect(first.count).toBeUndefined();
    const full = Array.from({ length: 600 }, (_, i) => buffer.record(refusal(`y${i}`)));
    expect(full.filter(Boolean)).toHaveLength(1);
    // the merged pair is the batch's first entry
    expect(full.indexOf(true) + 2).toBe(SEND_LOG_FLUSH_BATCH_ENTRIES);
  });

  it("waits for a larger batch where the adapter asks", () => {
    const buffer = new SendLogBuffer(500);
    const full = Array.from({ length: 600 }, (_, i) => buffer.record(refusal(`y${i}`)));
    expect(full.indexOf(true) + 1).toBe(500);
  });

  // Regression: a merged entry dropped at the cap counted as one decision, however many it stood
  // for. @see fix review 3 4
  it("counts every decision a dropped entry stood for", () => {
    const buffer = new SendLogBuffer();
    for (let n = 0; n < 1_000; n++) buffer.record(refusal("203.0.113.9"));
    for (let n = 0; n < 50_000; n++) {
      buffer.record(refusal(`10.${n >> 16}.${(n >> 8) & 255}.${n & 255}`, n));
    }
    const { entries, dropped } = buffer.take();
    expect(entries).toHaveLength(45_001);
    expect(dropped).toBe(1_000 + 4_999);
  });

  it("puts a failed write's entries back ahead of newer ones, dropping the oldest past its cap", () => {
    const buffer = new SendLogBuffer();
    const about = (n: number): SendLogEntry => refusal(`z${n}`, n);
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
