import type { Clock, Logger } from "./ports.js";

/** What a loop that retries on its own tells of each try: a failure, or the end of the failures. */
export interface OutageLog {
  /**
   * One failed try: told when it starts an outage, then counted into at most one line an
   * interval. `fields` go on the line it writes, if it writes one (what is waiting, say).
   */
  failed(error: unknown, fields?: object): void;
  /**
   * The outage, if there is one, is over: one line says so, with `fields` (held back while the
   * previous such line is under an interval old: see createOutageLog).
   */
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
 *
 * A backend that flaps (up and down every second or two) is one outage to this log, not one per
 * flap: a failure within an interval of the last line told (a `resumed`, typically) opens no outage
 * of its own with a `failed` line, it is counted into the next `still failing` reminder; and a
 * `resumed` within an interval of the previous `resumed` is held back, its counts carried, until a
 * success an interval after that one (or `close`) tells it. A 40 s flap so writes three lines a
 * loop, not two per flap (34); a lone outage's lines come as they always did.
 */
export function createOutageLog(options: OutageLogOptions): OutageLog {
  const { clock, log, what } = options;
  const level = options.level ?? "error";
  const intervalMs = options.intervalMs ?? OUTAGE_REMINDER_MS;
  let outage: {
    startedAtMs: number;
    failures: number;
    /** failures since the last line */
    untold: number;
    error: unknown;
    fields: object | undefined;
    /** when a success ended it, its `resumed` line held back (see above); null while failing */
    recovered: { atMs: number; fields: object | undefined } | null;
  } | null = null;
  // when the last line of any kind was written, and the last `resumed`
  let toldAtMs: number | null = null;
  let resumedAtMs: number | null = null;
  const now = () => clock.nowMs();
  // A clock stepped back counts as the interval gone by, not as an hour of silence.
  const intervalSince = (atMs: number | null) => atMs === null || now() - atMs >= intervalMs || now() < atMs;
  const remind = (suppressed: number) => {
    if (outage === null) return;
    log[level](
      { err: outage.error, ...outage.fields, suppressed, outageMs: Math.max(0, now() - outage.startedAtMs) },
      `${what} still failing`,
    );
    toldAtMs = now();
    outage.untold = 0;
  };
  const resume = () => {
    if (outage?.recovered == null) return;
    const { startedAtMs, failures, recovered } = outage;
    outage = null;
    log.info(
      { failures, outageMs: Math.max(0, recovered.atMs - startedAtMs), ...recovered.fields },
      `${what} resumed`,
    );
    toldAtMs = resumedAtMs = now();
  };
  return {
    failed(error, fields) {
      if (outage === null) {
        const quiet = !intervalSince(toldAtMs);
        outage = { startedAtMs: now(), failures: 1, untold: quiet ? 1 : 0, error, fields, recovered: null };
        if (!quiet) {
          log[level]({ err: error, ...fields }, `${what} failed`);
          toldAtMs = now();
        }
        return;
      }
      // a success held back did not last: the same outage goes on
      outage.recovered = null;
      outage.failures += 1;
      outage.untold += 1;
      outage.error = error;
      outage.fields = fields;
      if (intervalSince(toldAtMs)) remind(outage.untold - 1);
    },
    succeeded(fields) {
      if (outage === null) return;
      outage.recovered = { atMs: outage.recovered?.atMs ?? now(), fields };
      if (intervalSince(resumedAtMs)) resume();
    },
    close() {
      if (outage === null) return;
      if (outage.recovered !== null) resume();
      else if (outage.untold > 0) remind(outage.untold);
    },
  };
}
