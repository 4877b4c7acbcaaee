import type { Clock, Logger } from "./ports.js";

/** What a loop that retries on its own tells of each try: a failure, or the end of the failures. */
export interface OutageLog {
  /**
   * One failed try: told when it starts an outage, then counted into at most one line an
   * interval. `fields` go on the line it writes, if it writes one (what is waiting, say).
   */
  failed(error: unknown, fields?: object): void;
  /** The outage, if there is one, is over: one line says so, with `fields`. */
  succeeded(fields?: object): void;
  /** The failures not yet told, if any, in one last line (shutdown). */
  close(): void;
}

export interface OutageLogOptions {
  clock: Clock;
  log: Pick<Logger, "error" | "warn" | "info">;
  /** what fails, as its lines name it: "purge" writes "purge failed", "purge still failing", "purge resumed" */
  what: string;
  /** the level of the failure lines (default error) */
  level?: "error" | "warn";
  /** at most one failure line in this time (default OUTAGE_REMINDER_MS) */
  intervalMs?: number;
}

/** A loop that fails for a minute is reminded of once a minute, as a backend's request errors are. */
const OUTAGE_REMINDER_MS = 60_000;

/**
 * The log of a loop that retries on its own while a store is away (a checkpoint every 200 ms, a
 * purge or a claim every second, an outcome waiting to be recorded): its first failure is told at
 * once, with its error; then at most one `still failing` line an interval, at the first failure
 * after it, with `suppressed`, the failures since the previous line, and `outageMs`; and one
 * `resumed` line (info) when the caller says the outage is over, with `failures`, how many failed
 * in all, and `outageMs`. A loop's own retry pace would otherwise write a line, with a stack, for
 * every try (237 in the 47 s of a full disk). Plain state read against the clock, no timer: a
 * loop that keeps failing brings its reminder with its next failure, and one that stopped trying
 * has nothing new to tell but what `close` writes.
 */
export function createOutageLog(options: OutageLogOptions): OutageLog {
  const { clock, log, what } = options;
  const level = options.level ?? "error";
  const intervalMs = options.intervalMs ?? OUTAGE_REMINDER_MS;
  let outage: {
    startedAtMs: number;
    failures: number;
    toldAtMs: number;
    /** failures since the last line */
    untold: number;
    error: unknown;
    fields: object | undefined;
  } | null = null;
  const outageMs = (startedAtMs: number) => Math.max(0, clock.nowMs() - startedAtMs);
  const remind = (suppressed: number) => {
    if (outage === null) return;
    log[level](
      { err: outage.error, ...outage.fields, suppressed, outageMs: outageMs(outage.startedAtMs) },
      `${what} still failing`,
    );
    outage.toldAtMs = clock.nowMs();
    outage.untold = 0;
  };
  return {
    failed(error, fields) {
      const nowMs = clock.nowMs();
      if (outage === null) {
        outage = { startedAtMs: nowMs, failures: 1, toldAtMs: nowMs, untold: 0, error, fields };
        log[level]({ err: error, ...fields }, `${what} failed`);
        return;
      }
      outage.failures += 1;
      outage.untold += 1;
      outage.error = error;
      outage.fields = fields;
      // A clock stepped back counts as the interval gone by, not as an hour of silence.
      if (nowMs - outage.toldAtMs >= intervalMs || nowMs < outage.toldAtMs) remind(outage.untold - 1);
    },
    succeeded(fields) {
      if (outage === null) return;
      const { startedAtMs, failures } = outage;
      outage = null;
      log.info({ failures, outageMs: outageMs(startedAtMs), ...fields }, `${what} resumed`);
    },
    close() {
      if (outage !== null && outage.untold > 0) remind(outage.untold);
    },
  };
}
