import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SendLog, SendLogEntry } from "../../core/ports.js";
import { baseTime, uniqueId } from "./fixtures.contract.js";

export interface SendLogFixture {
  sendLog: SendLog;
  close(): Promise<void>;
}

/** The SendLog contract: recorded decisions come back per app, newest first, filtered. */
export function sendLogContract(name: string, open: () => Promise<SendLogFixture>): void {
  describe(`SendLog contract: ${name}`, () => {
    let fixture: SendLogFixture;
    beforeAll(async () => {
      fixture = await open();
    });
    afterAll(async () => {
      await fixture?.close();
    });

    const entry = (appId: string, atMs: number, fields: Partial<SendLogEntry> = {}): SendLogEntry => ({
      atMs,
      appId,
      face: "native",
      channel: "sms",
      to: "+86*******00",
      purpose: "sign_in",
      decision: "accepted",
      ...fields,
    });

    it("returns every field of what was recorded, newest first, once flushed", async () => {
      const now = baseTime();
      const appId = uniqueId("app");
      const full = entry(appId, now + 2, {
        country: "CN",
        ip: "203.0.113.9",
        deviceId: "device-1",
        decision: "rate_limited",
        reason: "recipient:1/60s",
        shadowed: ["prefix:100/3600s", "country:1000/86400s"],
        verificationId: "vf_1",
      });
      fixture.sendLog.record(entry(appId, now));
      fixture.sendLog.record(full);
      fixture.sendLog.record(entry(uniqueId("app"), now + 5));
      await fixture.sendLog.flush();
      expect(await fixture.sendLog.query({ appId, limit: 10 })).toEqual([full, entry(appId, now)]);
    });

    // Regression: PostgreSQL refused the NUL, and with it the whole batch of every app's entries.
    // @see .scratch/parity finding 5
    it("keeps a batch whose entry holds a NUL, that entry too", async () => {
      const now = baseTime();
      const appId = uniqueId("app");
      for (let index = 0; index < 4; index += 1) fixture.sendLog.record(entry(appId, now + index));
      fixture.sendLog.record(entry(appId, now + 4, { deviceId: "dev\u0000ice" }));
      await fixture.sendLog.flush();
      const kept = await fixture.sendLog.query({ appId, limit: 10 });
      expect(kept).toHaveLength(5);
      expect(["dev\u0000ice", "dev\uFFFDice"]).toContain(kept[0]?.deviceId);
    });

    it("filters by time and decision and stops at the limit", async () => {
      const now = baseTime();
      const appId = uniqueId("app");
      for (let index = 0; index < 5; index += 1) {
        fixture.sendLog.record(
          // Each from a client of its own: alike refusals would merge.
          entry(appId, now + index, {
            decision: index % 2 === 0 ? "accepted" : "denied",
            ip: `203.0.113.${index}`,
          }),
        );
      }
      const since = await fixture.sendLog.query({ appId, sinceMs: now + 3, limit: 10 });
      expect(since.map((item) => item.atMs)).toEqual([now + 4, now + 3]);
      const denied = await fixture.sendLog.query({ appId, decision: "denied", limit: 10 });
      expect(denied.map((item) => item.atMs)).toEqual([now + 3, now + 1]);
      expect(await fixture.sendLog.query({ appId, limit: 2 })).toHaveLength(2);
    });

    it("keeps a client's repeated refusals of one batch as one entry with their count", async () => {
      const now = baseTime();
      const appId = uniqueId("app");
      const refusal = (atMs: number, ip: string): SendLogEntry => ({
        atMs,
        appId,
        face: "native",
        ip,
        decision: "captcha_required",
        reason: "risk_ip:3/600s",
      });
      for (let index = 0; index < 1_000; index += 1)
        fixture.sendLog.record(refusal(now + index, "198.51.100.7"));
      fixture.sendLog.record(refusal(now + 5, "198.51.100.8"));
      // Refusals about one recipient merge too; accepted sends never do, however alike.
      const limited = entry(appId, now + 6, {
        ip: "198.51.100.7",
        decision: "rate_limited",
        reason: "recipient:1/60s",
      });
      for (let index = 0; index < 3; index += 1)
        fixture.sendLog.record({ ...limited, atMs: now + 6 + index });
      fixture.sendLog.record(entry(appId, now + 7));
      fixture.sendLog.record(entry(appId, now + 7));
      await fixture.sendLog.flush();
      const logged = await fixture.sendLog.query({ appId, limit: 10 });
      expect(logged).toHaveLength(5);
      expect(logged).toContainEqual({ ...refusal(now, "198.51.100.7"), count: 1_000 });
      expect(logged).toContainEqual(refusal(now + 5, "198.51.100.8"));
      expect(logged).toContainEqual({ ...limited, count: 3 });
      expect(logged.filter((item) => item.decision === "accepted")).toEqual([
        entry(appId, now + 7),
        entry(appId, now + 7),
      ]);
    });
  });
}
