import type { Clock, Logger } from "../core/ports.js";
import { LabeledCounts } from "./metrics.js";

export interface RefusalTallyOptions {
  log: Pick<Logger, "info" | "warn">;
  clock: Clock;
  /** how often the tally is written and started over (default a minute) */
  intervalMs?: number;
  /** a tally with more refusals than this is written as a warning (default 1,000) */
  warnAbove?: number;
  /** (face, app, code) triples counted apart; refusals of further ones are counted as `other` */
  maxKeys?: number;
}

/** One line's count: refusals of one error code on one face for one app. */
export interface RefusalCount {
  face: string;
  /** the app the request was resolved to, `-` when it was refused before (an unknown app or key) */
  app: string;
  /** the core code (UPPER_SNAKE), or the face's own wire code for a refusal decided by the face */
  code: string | number;
  count: number;
}

export interface RefusalTally {
  /** counts one refused request; allocates nothing once its triple has been counted this interval */
  count(face: string, app: string, code: string | number): void;
  /** writes the line of what was counted since the last one, if anything, and starts over */
  flush(): void;
  /** writes what is untold and stops the timer */
  close(): void;
}

const DEFAULT_INTERVAL_MS = 60_000;
// A busy deployment's honest mistakes (wrong codes, resends too soon) stay well under this a
// minute; a flood passes it in seconds.
const DEFAULT_WARN_ABOVE = 1_000;
// Apps × faces × codes is bounded by the configuration, but not small: the line stays under ~40 KB.
const DEFAULT_MAX_KEYS = 500;

/**
 * The per-process tally of refused requests, one line an interval. A refused request writes no
 * line of its own: a flood of them would write the disk full, and most refusals are a client's
 * honest mistake. But an attack must show: rate-limited and captcha-required sends, bad keys,
 * guessed ids and passwords are counted by (face, app, code) and written as one `info` line an
 * interval, a `warn` past `warnAbove` refusals. Counting costs three map look-ups (`LabeledCounts`,
 * as the metrics count): nested by face, app and code, strings the request holds, no key built.
 */
export function createRefusalTally(options: RefusalTallyOptions): RefusalTally {
  const { log, clock } = options;
  const intervalMs = options.intervalMs ?? DEFAULT_INTERVAL_MS;
  const warnAbove = options.warnAbove ?? DEFAULT_WARN_ABOVE;
  const maxKeys = options.maxKeys ?? DEFAULT_MAX_KEYS;
  const newCounts = () => new LabeledCounts(["face", "app", "code"], maxKeys);
  let counts = newCounts();
  let sinceMs = clock.nowMs();

  const flush = () => {
    const nowMs = clock.nowMs();
    const total = counts.changes;
    if (total > 0) {
      const refusals: RefusalCount[] = counts.rows(false).map(([face, app, code, count]) => ({
        face: String(face),
        app: String(app),
        code: code as string | number,
        count: count as number,
      }));
      refusals.sort((a, b) => b.count - a.count);
      const other = counts.overflowed;
      const line = {
        refused: total,
        seconds: Math.max(0, Math.round((nowMs - sinceMs) / 1000)),
        refusals,
        ...(other > 0 ? { other } : {}),
      };
      if (total > warnAbove) log.warn(line, "requests refused: more than usual");
      else log.info(line, "requests refused");
    }
    counts = newCounts();
    sinceMs = nowMs;
  };
  const timer = setInterval(flush, intervalMs);
  // The tally never keeps a process up; close() writes what it holds.
  timer.unref();

  return {
    count(face, app, code) {
      counts.add(face, app, code);
    },
    flush,
    close() {
      clearInterval(timer);
      flush();
    },
  };
}
