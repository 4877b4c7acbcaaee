import type { Clock, Logger } from "../core/ports.js";

/** One line of a throttled key: what `tell` is given to write. */
export interface ThrottledLine<Log, Detail> {
  /** the request's logger for a line an occurrence wrote, the `laterLog` for one a timer wrote */
  log: Log;
  /** the key's occurrences since its previous line, the one that wrote this line included */
  count: number;
  /** true when an occurrence wrote this line (it is among `count`), false when the interval's end did */
  atOccurrence: boolean;
  /** what the latest occurrence passed */
  detail: Detail;
}

export interface LogThrottleOptions<Log, Detail> {
  clock: Clock;
  /** at most one line per key in this time */
  intervalMs: number;
  /** keys tracked at once; an occurrence of a further key is counted under one shared overflow key */
  maxKeys: number;
  /** the logger of the lines written at an interval's end or at close, outside any request */
  laterLog: Log;
  /** writes one line */
  tell: (line: ThrottledLine<Log, Detail>) => void;
}

export interface LogThrottle<Log, Detail> {
  /** one occurrence of `key`: its line now when the key's last line is an interval old, else later */
  occurred(log: Log, key: string, detail: Detail): void;
  /**
   * The key's run is over (what failed works again): its untold occurrences are dropped with its
   * timer, for the caller to tell in its own words, and its next occurrence is told at once.
   */
  forget(key: string): void;
  /** writes what is untold and stops the timers (server shutdown) */
  close(): void;
}

interface KeyState<Detail> {
  /** occurrences since the key's last line */
  count: number;
  loggedAtMs: number;
  detail: Detail;
  timer: NodeJS.Timeout | undefined;
}

// Not a key any caller passes: a tracked key is a provider id or an error's text.
const OVERFLOW_KEY = "\u0000overflow";

/**
 * Lines that anyone able to send a request could repeat (a forged callback, a refusal during a
 * backend outage) are written at most once an interval per key: the first at once, with the
 * request's id; the rest counted, and told by one line when the interval ends. A key that stayed
 * quiet a whole interval is forgotten, so its next occurrence is again told at once; at most
 * `maxKeys` keys are tracked, the rest share one. Timers are unref'd: they never keep a process up.
 */
export function createLogThrottle<Log, Detail>(
  options: LogThrottleOptions<Log, Detail>,
): LogThrottle<Log, Detail> {
  const { clock, intervalMs, maxKeys, tell } = options;
  const keys = new Map<string, KeyState<Detail>>();

  const write = (log: Log, state: KeyState<Detail>, atOccurrence: boolean) => {
    tell({ log, count: state.count, atOccurrence, detail: state.detail });
    state.count = 0;
    state.loggedAtMs = clock.nowMs();
  };
  const arm = (key: string, state: KeyState<Detail>) => {
    clearTimeout(state.timer);
    state.timer = setTimeout(() => {
      state.timer = undefined;
      if (state.count === 0) {
        keys.delete(key);
        return;
      }
      write(options.laterLog, state, false);
      arm(key, state);
    }, intervalMs);
    state.timer.unref();
  };

  return {
    occurred(log, key, detail) {
      let tracked = key;
      let state = keys.get(key);
      if (state === undefined && keys.size >= maxKeys) {
        tracked = OVERFLOW_KEY;
        state = keys.get(OVERFLOW_KEY);
      }
      if (state === undefined) {
        state = { count: 1, loggedAtMs: 0, detail, timer: undefined };
        keys.set(tracked, state);
        write(log, state, true);
        arm(tracked, state);
        return;
      }
      state.count += 1;
      state.detail = detail;
      const nowMs = clock.nowMs();
      // A clock stepped back counts as the interval gone by, not as an hour to wait.
      if (nowMs - state.loggedAtMs >= intervalMs || nowMs < state.loggedAtMs) {
        write(log, state, true);
        arm(tracked, state);
      }
    },
    forget(key) {
      const state = keys.get(key);
      if (state === undefined) return;
      clearTimeout(state.timer);
      keys.delete(key);
    },
    close() {
      for (const state of keys.values()) {
        clearTimeout(state.timer);
        state.timer = undefined;
        if (state.count > 0) write(options.laterLog, state, false);
      }
      keys.clear();
    },
  };
}

/** What a background loop tells of each round: a failure, or a round that worked. */
export interface OutageLog {
  /** one failed round: told when it starts an outage, then counted into one line an interval */
  failed(error: unknown): void;
  /** a round that worked: ends the outage, if there was one, with a line saying so */
  succeeded(): void;
  /** writes what is untold and stops the timer (shutdown) */
  close(): void;
}

export interface OutageLogOptions {
  clock: Clock;
  log: Pick<Logger, "error" | "warn" | "info">;
  /** what fails, as its lines name it: "purge" writes "purge failed", "purge still failing", "purge resumed" */
  what: string;
  /** the level of the failure lines (default error) */
  level?: "error" | "warn";
  /** at most one failure line in this time (default OUTAGE_LOG_INTERVAL_MS) */
  intervalMs?: number;
}

/** A loop that fails for a minute is reminded of once a minute, as a backend's request errors are. */
const OUTAGE_LOG_INTERVAL_MS = 60_000;
const OUTAGE_KEY = "outage";

/**
 * The log of a loop that retries on its own while a store is away (a checkpoint every 200 ms, a
 * purge or a claim every second): its first failure is told at once, with its error; then one
 * `still failing` line an interval with `suppressed`, the failures since the previous line; and
 * one `resumed` line (info) at the first round that works, with `failures`, how many rounds failed
 * in all, and `outageMs`. A loop's own retry pace would otherwise write a line, with a stack, for
 * every round (237 in the 47 s of a full disk).
 */
export function createOutageLog(options: OutageLogOptions): OutageLog {
  const { clock, log, what } = options;
  const level = options.level ?? "error";
  let outage: { startedAtMs: number; failures: number } | null = null;
  const outageMs = (startedAtMs: number) => Math.max(0, clock.nowMs() - startedAtMs);
  const throttle = createLogThrottle<null, unknown>({
    clock,
    intervalMs: options.intervalMs ?? OUTAGE_LOG_INTERVAL_MS,
    maxKeys: 1,
    laterLog: null,
    tell({ count, atOccurrence, detail }) {
      if (outage === null) return;
      if (atOccurrence && outage.failures === 1) {
        log[level]({ err: detail }, `${what} failed`);
        return;
      }
      log[level](
        { err: detail, suppressed: atOccurrence ? count - 1 : count, outageMs: outageMs(outage.startedAtMs) },
        `${what} still failing`,
      );
    },
  });
  return {
    failed(error) {
      outage ??= { startedAtMs: clock.nowMs(), failures: 0 };
      outage.failures += 1;
      throttle.occurred(null, OUTAGE_KEY, error);
    },
    succeeded() {
      if (outage === null) return;
      const { startedAtMs, failures } = outage;
      outage = null;
      throttle.forget(OUTAGE_KEY);
      log.info({ failures, outageMs: outageMs(startedAtMs) }, `${what} resumed`);
    },
    close: () => throttle.close(),
  };
}
