import type { Clock } from "../core/ports.js";

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

// The outage log of the loops that retry on their own lives in core, where the outbox worker,
// which may import nothing from here, logs its claims and settles with it; the server's loops
// (purge, checkpoints, the scrape's count) take it from here, beside the throttle of request lines.
export { createOutageLog, type OutageLog, type OutageLogOptions } from "../core/outage-log.js";
