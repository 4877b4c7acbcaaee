import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { Counter, collectDefaultMetrics, Gauge, Registry } from "prom-client";
import { answeredWithin } from "../core/answered-within.js";
import type { CircuitBreakers } from "../core/delivery/circuit-breaker.js";
import type { Clock, Logger, OutboxStore, SendLog, VerificationStore } from "../core/ports.js";
import { equalInConstantTime } from "../core/secrets.js";
import type { DeliveryRecord } from "../core/types.js";
import { createOutageLog } from "./log-throttle.js";
import type { RefusalTally } from "./refusal-tally.js";

// Prometheus metrics, shaped by the request path's budget (bench/RESULTS.md): a request adds at most
// an integer increment in a nested Map (no key built, nothing allocated once its series exists);
// the counts become prom-client metrics only when /metrics is scraped (each metric's `collect`).

/** A label's value as counted: the strings (and Fresns's and IDaaS's numeric codes) requests hold. */
export type LabelValue = string | number;

/** One series: its label values in the order of the counts' label names, then its count. */
export type SeriesRow = LabelValue[];

// Apps, faces, channels, decisions, codes and providers are bounded by the configuration and the
// code, but an app count is the operator's: a cap keeps one mistake from growing a scrape for ever.
const DEFAULT_MAX_SERIES = 2_000;
/** Every label of the series that counts what came past the cap. */
export const OVERFLOW_LABEL = "_other";

type Level = Map<LabelValue, Level | number>;

/**
 * Counts by a fixed list of (at most four) labels, nested by label as refusal-tally.ts nests them:
 * counting one is a Map look-up per label, and allocates nothing once its series exists. Past
 * `maxSeries` series, further new ones are counted together under `OVERFLOW_LABEL`.
 */
export class LabeledCounts {
  private readonly root: Level = new Map();
  private series = 0;
  private overflow = 0;
  /** grows with every count, so a reader can tell whether anything changed since it last looked */
  changes = 0;

  constructor(
    readonly labelNames: readonly string[],
    private readonly maxSeries = DEFAULT_MAX_SERIES,
  ) {
    if (labelNames.length < 1 || labelNames.length > 4) throw new Error("one to four labels");
  }

  /** counts one of the series (a, b, c, d), as many labels as `labelNames` names */
  add(a: LabelValue, b?: LabelValue, c?: LabelValue, d?: LabelValue): void {
    this.addBy(1, a, b, c, d);
  }

  addBy(amount: number, a: LabelValue, b?: LabelValue, c?: LabelValue, d?: LabelValue): void {
    this.changes += 1;
    const depth = this.labelNames.length;
    let level = this.root;
    for (let index = 0; index < depth - 1; index++) {
      const key = (index === 0 ? a : index === 1 ? b : c) as LabelValue;
      let next = level.get(key) as Level | undefined;
      if (next === undefined) {
        if (this.series >= this.maxSeries) {
          this.overflow += amount;
          return;
        }
        next = new Map();
        level.set(key, next);
      }
      level = next;
    }
    const key = (depth === 1 ? a : depth === 2 ? b : depth === 3 ? c : d) as LabelValue;
    const seen = level.get(key) as number | undefined;
    if (seen !== undefined) {
      level.set(key, seen + amount);
      return;
    }
    if (this.series >= this.maxSeries) {
      this.overflow += amount;
      return;
    }
    this.series += 1;
    level.set(key, amount);
  }

  /** what came past `maxSeries`, counted together */
  get overflowed(): number {
    return this.overflow;
  }

  /**
   * Every series as a row of its label values and its count (plain arrays: they cross threads),
   * and what came past `maxSeries` as a row of `OVERFLOW_LABEL`s unless `withOverflow` is false.
   */
  rows(withOverflow = true): SeriesRow[] {
    const rows: SeriesRow[] = [];
    const walk = (level: Level, prefix: LabelValue[]) => {
      for (const [key, value] of level) {
        if (typeof value === "number") rows.push([...prefix, key, value]);
        else walk(value, [...prefix, key]);
      }
    };
    walk(this.root, []);
    if (withOverflow && this.overflow > 0)
      rows.push([...this.labelNames.map(() => OVERFLOW_LABEL), this.overflow]);
    return rows;
  }

  /** adds rows another `LabeledCounts` of the same labels gave */
  addRows(rows: readonly SeriesRow[]): void {
    const depth = this.labelNames.length;
    for (const row of rows) {
      const [a, b, c, d] = row as [LabelValue, LabelValue?, LabelValue?, LabelValue?];
      this.addBy(row[depth] as number, a, b, c, d);
    }
  }
}

/** What the outbox worker did, as the delivery thread sends it to the server (structured clone). */
export interface DeliverySnapshot {
  /** rows of (channel, provider, outcome, count) */
  deliveries: SeriesRow[];
  /** (provider, 1 when its circuit is open or half-open, else 0) */
  circuits: [string, number][];
}

/**
 * How a delivery ended its try: sent, retried later, failed (a provider's answer), unconfirmed (no
 * answer from a provider that had the message; failing over to one that has not),
 * unconfirmed_given_up (the same with no provider left that has not had it, or out of time: the
 * message given up, though it may have gone out), dropped (none tried).
 */
export type DeliveryOutcome =
  | "sent"
  | "retried"
  | "failed"
  | "unconfirmed"
  | "unconfirmed_given_up"
  | "dropped";

/** The outbox worker's counts, kept where it runs (the delivery thread, or in process for tests). */
export interface DeliveryTally {
  deliveries: LabeledCounts;
  /** grows when a count or a circuit changed */
  changes(): number;
  snapshot(): DeliverySnapshot;
}

/**
 * Counts the outbox worker's outcomes by decorating its store: each outcome once the store has
 * recorded it (a settle that fails is tried again, and counted then). A message given up without a
 * provider's try (`provider: "none"`: its code ended, expired or its app is gone, or no provider
 * could take it before it expired) is `dropped`; one a provider refused for good, or that ran out
 * of time after providers failed, is `failed`. A try a provider had but never answered for is
 * `unconfirmed` while the message fails over, and `unconfirmed_given_up` when the message ends
 * there (no provider left that has not had it, or out of time), so that `failed`, `dropped` and
 * `unconfirmed_given_up` together count every message given up. A message put off again while
 * every circuit is open (`postpone`) is `retried`, as `provider="none"`, each time.
 */
export function countDeliveries(
  outbox: OutboxStore,
  breakers: CircuitBreakers,
  providers: readonly string[],
): { outbox: OutboxStore; breakers: CircuitBreakers; tally: DeliveryTally } {
  const deliveries = new LabeledCounts(["channel", "provider", "outcome"]);
  const circuits = new Map<string, number>(providers.map((provider) => [provider, 0]));
  let circuitChanges = 0;
  const count = (channel: string, provider: string, outcome: DeliveryOutcome) =>
    deliveries.add(channel, provider, outcome);
  const counted: OutboxStore = {
    ...outbox,
    markSent: (message, delivery) =>
      outbox.markSent(message, delivery).then(() => count(message.channel, delivery.provider, "sent")),
    markRetry: (message, delivery, nextAttemptAtMs) =>
      outbox
        .markRetry(message, delivery, nextAttemptAtMs)
        // An unconfirmed try fails over like a failed one, but is the provider's silence.
        .then(() =>
          count(
            message.channel,
            delivery.provider,
            delivery.status === "unconfirmed" ? "unconfirmed" : "retried",
          ),
        ),
    markFailed: (message, delivery) =>
      outbox
        .markFailed(message, delivery)
        .then(() => count(message.channel, delivery.provider, givenUpOutcome(delivery))),
    // A message waiting again while every circuit is open records nothing new, but is a retry all
    // the same: without it `retried` stood still through a whole outage.
    postpone: (message, nextAttemptAtMs) =>
      outbox.postpone(message, nextAttemptAtMs).then(() => count(message.channel, "none", "retried")),
  };
  // A circuit opens and closes only on a try's outcome: looked at then, never on a timer.
  const note = (provider: string) => {
    const open = breakers.state(provider) === "closed" ? 0 : 1;
    if (circuits.get(provider) === open) return;
    circuits.set(provider, open);
    circuitChanges += 1;
  };
  const observed: CircuitBreakers = {
    permit: (provider) => breakers.permit(provider),
    succeeded(provider) {
      breakers.succeeded(provider);
      note(provider);
    },
    failed(provider) {
      breakers.failed(provider);
      note(provider);
    },
    released: (provider) => breakers.released(provider),
    retryAtMs: (provider) => breakers.retryAtMs(provider),
    state: (provider) => breakers.state(provider),
  };
  return {
    outbox: counted,
    breakers: observed,
    tally: {
      deliveries,
      changes: () => deliveries.changes + circuitChanges,
      snapshot: () => ({ deliveries: deliveries.rows(), circuits: [...circuits] }),
    },
  };
}

/**
 * A message's last try. Its record is `unconfirmed` after a provider's silence, and also with
 * `provider: "none"` when every provider of a route changed since took it without answering: both
 * may have gone out, and are told apart from the failover that `unconfirmed` counts.
 */
function givenUpOutcome(delivery: DeliveryRecord): DeliveryOutcome {
  if (delivery.status === "unconfirmed") return "unconfirmed_given_up";
  return delivery.provider === "none" ? "dropped" : "failed";
}

/**
 * The server's view of a delivery thread's counts: its latest snapshot, on top of what the threads
 * before it counted (a thread restarted after a failure starts from zero; the counters must not).
 */
export interface DeliverySnapshots {
  /** the running thread's latest snapshot */
  received(snapshot: DeliverySnapshot): void;
  /** the thread is gone: its last counts are kept, its circuits with it */
  threadEnded(): void;
  current(): DeliverySnapshot;
}

export function createDeliverySnapshots(): DeliverySnapshots {
  const carried = new LabeledCounts(["channel", "provider", "outcome"]);
  let latest: DeliverySnapshot = { deliveries: [], circuits: [] };
  return {
    received(snapshot) {
      latest = snapshot;
    },
    threadEnded() {
      carried.addRows(latest.deliveries);
      latest = { deliveries: [], circuits: [] };
    },
    current() {
      const sum = new LabeledCounts(carried.labelNames);
      sum.addRows(carried.rows());
      sum.addRows(latest.deliveries);
      return { deliveries: sum.rows(), circuits: latest.circuits };
    },
  };
}

/** The counts the request thread keeps; the decorators below and the refusal tally feed them. */
export interface ServerCounts {
  /** (app, face, channel, decision): every send decision the core reports to the send log */
  sends: LabeledCounts;
  /** (face, app, code): every refused request, as the refusal tally counts it */
  refusals: LabeledCounts;
  /** (app): codes approved */
  approvals: LabeledCounts;
}

export function createServerCounts(): ServerCounts {
  return {
    sends: new LabeledCounts(["app", "face", "channel", "decision"]),
    refusals: new LabeledCounts(["face", "app", "code"]),
    approvals: new LabeledCounts(["app"]),
  };
}

/**
 * The refusal tally, also counting each refusal for the metrics: one call per refused request
 * feeds both (the tally starts over every minute; the metric's counts never do).
 */
export function countingRefusals(tally: RefusalTally, refusals: LabeledCounts): RefusalTally {
  return {
    count(face, app, code) {
      tally.count(face, app, code);
      refusals.add(face, app, code);
    },
    flush: () => tally.flush(),
    close: () => tally.close(),
  };
}

/** The channel of a decision made before the body was read (a captcha demanded of a risky IP). */
const NO_CHANNEL = "-";

/** The send log, counting each decision as the core records it (the core is left alone). */
export function countingSendLog(sendLog: SendLog, sends: LabeledCounts): SendLog {
  return {
    record(entry) {
      sends.addBy(entry.count ?? 1, entry.appId, entry.face, entry.channel ?? NO_CHANNEL, entry.decision);
      sendLog.record(entry);
    },
    query: (filter) => sendLog.query(filter),
    flush: () => sendLog.flush(),
  };
}

/**
 * The verification store, counting the codes it approves: `approve` is called for right codes
 * only; a store that judges in one step (`attemptAndApprove`, SQLite) says so in its outcome.
 */
export function countingApprovals(store: VerificationStore, approvals: LabeledCounts): VerificationStore {
  const { attemptAndApprove } = store;
  return {
    ...store,
    approve: (appId, id, token, failureKey, nowMs) =>
      store.approve(appId, id, token, failureKey, nowMs).then((approved) => {
        if (approved) approvals.add(appId);
        return approved;
      }),
    ...(attemptAndApprove
      ? {
          attemptAndApprove: async (ref, budget, nowMs, judge) => {
            const outcome = await attemptAndApprove.call(store, ref, budget, nowMs, judge);
            if (outcome.kind === "approved") approvals.add(ref.appId);
            return outcome;
          },
        }
      : {}),
  };
}

export interface MetricsOptions {
  counts: ServerCounts;
  /** the delivery counts as last known (`Delivery.deliveryMetrics`) */
  deliveries: () => DeliverySnapshot;
  /** messages waiting for delivery, read at each scrape */
  queued: () => Promise<number>;
  clock: Clock;
  log: Pick<Logger, "error" | "warn" | "info">;
}

export interface Metrics {
  contentType: string;
  /** the text of one scrape */
  scrape(): Promise<string>;
  /** writes what the log of a failing count has not told yet (shutdown) */
  close(): void;
}

/** The /metrics text: prom-client's process metrics and verifyd's own, filled in at each scrape. */
export function createMetrics(options: MetricsOptions): Metrics {
  const { counts, log } = options;
  const registry = new Registry();
  const fill = (
    metric: Counter<string> | Gauge<string>,
    labelNames: readonly string[],
    rows: SeriesRow[],
  ) => {
    metric.reset();
    for (const row of rows) {
      const labels: Record<string, LabelValue> = {};
      labelNames.forEach((name, index) => {
        labels[name] = row[index] as LabelValue;
      });
      const value = row[labelNames.length] as number;
      if (metric instanceof Counter) metric.inc(labels, value);
      else metric.set(labels, value);
    }
  };
  const counter = (
    name: string,
    help: string,
    source: LabeledCounts | (() => SeriesRow[]),
    labelNames: readonly string[],
  ) =>
    new Counter({
      name,
      help,
      labelNames,
      registers: [registry],
      collect() {
        fill(this, labelNames, typeof source === "function" ? source() : source.rows());
      },
    });
  counter(
    "verifyd_send_decisions_total",
    "Send decisions by app, face, channel (- before the body was read) and decision",
    counts.sends,
    counts.sends.labelNames,
  );
  counter(
    "verifyd_refusals_total",
    "Refused requests by face, app (- before it was known) and core or wire error code",
    counts.refusals,
    counts.refusals.labelNames,
  );
  counter(
    "verifyd_checks_approved_total",
    "Codes approved, by app",
    counts.approvals,
    counts.approvals.labelNames,
  );
  counter(
    "verifyd_deliveries_total",
    "Delivery tries by channel, provider (none when no provider was tried) and outcome: sent, retried, failed, unconfirmed (failing over), unconfirmed_given_up, dropped",
    () => options.deliveries().deliveries,
    ["channel", "provider", "outcome"],
  );
  new Gauge({
    name: "verifyd_provider_circuit_open",
    help: "1 while the provider's circuit breaker skips it (open or waiting for its probe), else 0",
    labelNames: ["provider"],
    registers: [registry],
    collect() {
      fill(this, ["provider"], options.deliveries().circuits);
    },
  });
  new Gauge({
    name: "verifyd_build_info",
    help: "Always 1; the version of verifyd serving",
    labelNames: ["version"],
    registers: [registry],
  }).set({ version: VERSION }, 1);
  // The queue is counted in the store at each scrape. While the store cannot answer, the count is
  // left out of the scrape rather than shown as a number it is not (prom-client's reset() of a
  // gauge without labels showed 0: a backlog alert cleared exactly when the database failed), and
  // verifyd_outbox_count_failed says so. Written here, not by a registry's gauge, so that two
  // scrapes at once each show their own count. A count that has not come within
  // QUEUED_COUNT_TIMEOUT_MS counts as failed too.
  const countLog = createOutageLog({
    clock: options.clock,
    log,
    what: "metrics: outbox count",
    level: "warn",
  });
  const queuedText = async (): Promise<string> => {
    let queued: number;
    try {
      queued = await answeredWithin(options.queued(), QUEUED_COUNT_TIMEOUT_MS);
    } catch (error) {
      countLog.failed(error);
      return gaugeText(COUNT_FAILED, COUNT_FAILED_HELP, 1);
    }
    countLog.succeeded();
    return gaugeText(QUEUED, QUEUED_HELP, queued) + gaugeText(COUNT_FAILED, COUNT_FAILED_HELP, 0);
  };
  return {
    contentType: registry.contentType,
    async scrape() {
      // Started at the first scrape: a server nobody scrapes keeps no GC observer or lag timer.
      const [own, ofProcess, queued] = await Promise.all([
        registry.metrics(),
        processRegistry().metrics(),
        queuedText(),
      ]);
      return `${ofProcess}\n${own}\n${queued}`;
    },
    close: () => countLog.close(),
  };
}

// On a stalled PostgreSQL (connections gone silent) the count waited out the driver's own
// timeouts, about 6 s, and the whole scrape with it: past a Prometheus scrape_timeout every series
// was lost, not only this one. A second leaves most of the usual 10 s (or a shortened 2-5 s) free.
const QUEUED_COUNT_TIMEOUT_MS = 1_000;
const QUEUED = "verifyd_outbox_queued";
const QUEUED_HELP = "Messages waiting for delivery (claimed ones included) in the outbox";
const COUNT_FAILED = "verifyd_outbox_count_failed";
const COUNT_FAILED_HELP =
  "1 when this scrape could not count the queued messages (the store failed), and left their count out; else 0";

/** One gauge without labels in Prometheus's text format (its help has no backslash or newline). */
const gaugeText = (name: string, help: string, value: number) =>
  `# HELP ${name} ${help}\n# TYPE ${name} gauge\n${name} ${value}\n`;

const VERSION = (
  JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string }
).version;

let sharedProcessRegistry: Registry | undefined;

/**
 * prom-client's process metrics (CPU, memory, event loop lag, GC, handles), in one registry per
 * process: they describe the process, and each set keeps timers and observers of its own (so they
 * are started by the first scrape; their counts start there).
 */
function processRegistry(): Registry {
  if (!sharedProcessRegistry) {
    sharedProcessRegistry = new Registry();
    collectDefaultMetrics({ register: sharedProcessRegistry, prefix: "verifyd_" });
  }
  return sharedProcessRegistry;
}

/**
 * Whether an Authorization header carries the metrics token as its Bearer. Both sides are hashed
 * first, so the comparison takes the same time whatever the given value's length.
 */
export function bearerMatches(authorization: string | undefined, token: string): boolean {
  const given = /^Bearer\s+(\S+)$/i.exec(authorization ?? "")?.[1];
  if (given === undefined) return false;
  return equalInConstantTime(sha256(given), sha256(token));
}

const sha256 = (text: string) => createHash("sha256").update(text).digest("hex");
