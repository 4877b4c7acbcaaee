import { describe, expect, it } from "vitest";
import { FixedClock } from "../../test/fakes/fixed-clock.js";
import { createCircuitBreakers } from "../core/delivery/circuit-breaker.js";
import type { OutboxStore, SendLog, SendLogEntry } from "../core/ports.js";
import type { DeliveryRecord, OutboxMessage } from "../core/types.js";
import {
  bearerMatches,
  countDeliveries,
  countingSendLog,
  createDeliverySnapshots,
  createMetrics,
  createServerCounts,
  LabeledCounts,
  OVERFLOW_LABEL,
} from "./metrics.js";

describe("LabeledCounts", () => {
  it("counts by nested labels and gives each series as a row", () => {
    const counts = new LabeledCounts(["face", "app", "code"]);
    counts.add("native", "shop", "RATE_LIMITED");
    counts.add("native", "shop", "RATE_LIMITED");
    counts.add("fresns", "-", 33201);
    counts.addBy(5, "native", "shop", "CODE_INVALID");
    expect(counts.rows()).toEqual([
      ["native", "shop", "RATE_LIMITED", 2],
      ["native", "shop", "CODE_INVALID", 5],
      ["fresns", "-", 33201, 1],
    ]);
  });

  it("counts series past its cap together under one overflow series", () => {
    const counts = new LabeledCounts(["app"], 3);
    for (const app of ["a", "b", "c", "d", "e", "a"]) counts.add(app);
    expect(counts.rows()).toEqual([
      ["a", 2],
      ["b", 1],
      ["c", 1],
      [OVERFLOW_LABEL, 2],
    ]);
  });

  it("adds the rows of another count of the same labels", () => {
    const first = new LabeledCounts(["channel", "provider", "outcome"]);
    first.add("email", "smtp", "sent");
    const second = new LabeledCounts(first.labelNames);
    second.addRows(first.rows());
    second.addRows(first.rows());
    second.add("sms", "dev", "sent");
    expect(second.rows()).toEqual([
      ["email", "smtp", "sent", 2],
      ["sms", "dev", "sent", 1],
    ]);
  });
});

describe("countingSendLog", () => {
  it("counts by app, face, channel and decision only, however many recipients, IPs and reasons", async () => {
    const recorded: SendLogEntry[] = [];
    const inner: SendLog = {
      record: (entry) => recorded.push(entry),
      query: async () => [],
      flush: async () => {},
    };
    const sends = new LabeledCounts(["app", "face", "channel", "decision"]);
    const log = countingSendLog(inner, sends);
    for (let index = 0; index < 1_000; index++) {
      log.record({
        atMs: index,
        appId: "shop",
        face: "native",
        channel: index % 2 === 0 ? "email" : "sms",
        to: `r${index}@example.com`,
        ip: `10.${index % 250}.${index % 7}.1`,
        country: index % 3 === 0 ? "CN" : "US",
        decision: index % 5 === 0 ? "rate_limited" : "accepted",
        reason: `per_prefix:+86${index}`,
      });
    }
    // a captcha demanded before the body was read has no channel; merged entries count each
    log.record({ atMs: 0, appId: "shop", face: "cloudbase", decision: "captcha_required", count: 3 });
    expect(recorded).toHaveLength(1_001);
    expect(sends.rows()).toEqual([
      ["shop", "native", "email", "rate_limited", 100],
      ["shop", "native", "email", "accepted", 400],
      ["shop", "native", "sms", "accepted", 400],
      ["shop", "native", "sms", "rate_limited", 100],
      ["shop", "cloudbase", "-", "captcha_required", 3],
    ]);
  });
});

describe("countDeliveries", () => {
  const message = { id: "m1", channel: "email" } as OutboxMessage;
  const record = (provider: string): DeliveryRecord => ({ provider, status: "failed", atMs: 0 });
  const settled: string[] = [];
  const outbox = {
    claim: async () => [],
    markSent: async () => void settled.push("sent"),
    markRetry: async () => void settled.push("retry"),
    postpone: async () => void settled.push("postpone"),
    markFailed: async () => void settled.push("failed"),
    recordReceipt: async () => true,
    queuedCount: async () => 0,
  } as unknown as OutboxStore;

  it("counts each settled try by channel, provider and outcome, and each circuit as it opens and closes", async () => {
    const clock = new FixedClock();
    const breakers = createCircuitBreakers({ clock, failureThreshold: 2, coolDownMs: 1_000 });
    const counted = countDeliveries(outbox, breakers, ["smtp", "backup"]);
    expect(counted.tally.snapshot()).toEqual({
      deliveries: [],
      circuits: [
        ["smtp", 0],
        ["backup", 0],
      ],
    });
    await counted.outbox.markSent(message, { provider: "smtp", status: "sent", atMs: 0 });
    await counted.outbox.markRetry(message, record("smtp"), 1);
    await counted.outbox.markFailed(message, record("smtp"));
    await counted.outbox.markFailed(message, record("none"));
    await counted.outbox.markFailed(message, { provider: "smtp", status: "unconfirmed", atMs: 0 });
    await counted.outbox.markRetry(message, { provider: "smtp", status: "unconfirmed", atMs: 0 }, 1);
    // Regression: a repeated pause (every circuit open) went through postpone, which was not
    // counted, so `retried` stood still through an outage.
    await counted.outbox.postpone(message, 2);
    await counted.outbox.postpone(message, 3);
    expect(settled).toEqual(["sent", "retry", "failed", "failed", "failed", "retry", "postpone", "postpone"]);
    const before = counted.tally.changes();
    counted.breakers.failed("smtp");
    expect(counted.tally.changes()).toBe(before);
    counted.breakers.failed("smtp");
    expect(counted.tally.changes()).toBeGreaterThan(before);
    expect(counted.tally.snapshot()).toEqual({
      deliveries: [
        ["email", "smtp", "sent", 1],
        ["email", "smtp", "retried", 1],
        ["email", "smtp", "failed", 1],
        ["email", "smtp", "unconfirmed_given_up", 1],
        ["email", "smtp", "unconfirmed", 1],
        ["email", "none", "dropped", 1],
        ["email", "none", "retried", 2],
      ],
      circuits: [
        ["smtp", 1],
        ["backup", 0],
      ],
    });
    // half-open after the cool-down is still skipping it; a probe that goes through closes it
    clock.advanceSeconds(1);
    expect(counted.breakers.permit("smtp")).toBe("probe");
    counted.breakers.succeeded("smtp");
    expect(counted.tally.snapshot().circuits).toEqual([
      ["smtp", 0],
      ["backup", 0],
    ]);
  });
});

describe("countDeliveries: a message given up after a provider's silence", () => {
  // Regression: a try a provider never answered counted `unconfirmed` both when the message failed
  // over to another provider and when it was given up with none left, so `failed` and `dropped`
  // did not add up to the messages lost.
  it("counts the give-up apart from the failover, and the route's last silent provider as one", async () => {
    const message = { id: "m1", channel: "sms" } as OutboxMessage;
    const outbox = {
      markRetry: async () => {},
      markFailed: async () => {},
    } as unknown as OutboxStore;
    const counted = countDeliveries(
      outbox,
      createCircuitBreakers({ clock: new FixedClock(), failureThreshold: 5, coolDownMs: 1_000 }),
      ["primary", "backup"],
    );
    const silent = (provider: string): DeliveryRecord => ({ provider, status: "unconfirmed", atMs: 0 });
    // the primary took it without answering: over to the backup, which did the same: given up
    await counted.outbox.markRetry(message, silent("primary"), 0);
    await counted.outbox.markFailed(message, silent("backup"));
    // every provider of a route changed since had taken it without answering
    await counted.outbox.markFailed(message, silent("none"));
    expect(counted.tally.snapshot().deliveries).toEqual([
      ["sms", "primary", "unconfirmed", 1],
      ["sms", "backup", "unconfirmed_given_up", 1],
      ["sms", "none", "unconfirmed_given_up", 1],
    ]);
  });
});

describe("createMetrics: the queued messages while the store cannot count them", () => {
  /** the lines of one family: its help, its type and its samples */
  const family = (text: string, name: string) =>
    text
      .split("\n")
      .filter((line) =>
        [`# HELP ${name} `, `# TYPE ${name} `, `${name} `].some((start) => line.startsWith(start)),
      );
  // Regression: a count that failed set the gauge to 0 (prom-client's reset() of a gauge without
  // labels), so a backlog alert cleared exactly when the database failed.
  it("leaves the count out of the scrape, says the count failed, and shows it again once it works", async () => {
    let queued: () => Promise<number> = async () => 50;
    const warnings: string[] = [];
    const metrics = createMetrics({
      counts: createServerCounts(),
      deliveries: () => ({ deliveries: [], circuits: [] }),
      queued: () => queued(),
      clock: new FixedClock(),
      log: {
        error() {},
        warn: (_fields, message) => void warnings.push(String(message)),
        info: (_fields, message) => void warnings.push(String(message)),
      },
    });
    const first = await metrics.scrape();
    expect(family(first, "verifyd_outbox_queued")).toEqual([
      "# HELP verifyd_outbox_queued Messages waiting for delivery (claimed ones included) in the outbox",
      "# TYPE verifyd_outbox_queued gauge",
      "verifyd_outbox_queued 50",
    ]);
    queued = () => Promise.reject(new Error("connection terminated"));
    for (let scrape = 0; scrape < 3; scrape++) {
      const text = await metrics.scrape();
      expect(family(text, "verifyd_outbox_queued")).toEqual([]);
      expect(text).toContain("\nverifyd_outbox_count_failed 1\n");
      // the rest of the scrape is there as ever
      expect(text).toContain('verifyd_build_info{version="');
    }
    queued = async () => 50;
    const back = await metrics.scrape();
    expect(back).toContain("\nverifyd_outbox_queued 50\n");
    expect(back).toContain("\nverifyd_outbox_count_failed 0\n");
    // one warning for the outage, and one when it ended, however many scrapes it failed
    expect(warnings).toEqual(["metrics: outbox count failed", "metrics: outbox count resumed"]);
    metrics.close();
  });
});

describe("createDeliverySnapshots", () => {
  it("keeps what a thread counted once it is gone, under the next thread's counts", () => {
    const snapshots = createDeliverySnapshots();
    snapshots.received({ deliveries: [["email", "smtp", "sent", 4]], circuits: [["smtp", 1]] });
    snapshots.received({ deliveries: [["email", "smtp", "sent", 5]], circuits: [["smtp", 1]] });
    snapshots.threadEnded();
    expect(snapshots.current()).toEqual({ deliveries: [["email", "smtp", "sent", 5]], circuits: [] });
    snapshots.received({ deliveries: [["email", "smtp", "sent", 2]], circuits: [["smtp", 0]] });
    expect(snapshots.current()).toEqual({
      deliveries: [["email", "smtp", "sent", 7]],
      circuits: [["smtp", 0]],
    });
  });
});

describe("bearerMatches", () => {
  const token = "metrics-token-0123456789";
  it("takes the token as a Bearer only", () => {
    expect(bearerMatches(`Bearer ${token}`, token)).toBe(true);
    expect(bearerMatches(`bearer ${token}`, token)).toBe(true);
    expect(bearerMatches(token, token)).toBe(false);
    expect(bearerMatches(`Bearer ${token}x`, token)).toBe(false);
    expect(bearerMatches(`Bearer ${token.slice(1)}`, token)).toBe(false);
    expect(bearerMatches("Bearer ", token)).toBe(false);
    expect(bearerMatches(undefined, token)).toBe(false);
  });
});
