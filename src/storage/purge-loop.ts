import type { Clock } from "../core/ports.js";
import type { PurgePass } from "./backend.js";

// A store's purge removes a bounded batch per table, so one pass never holds a lock for long.
// Sends go on all day, so the loop runs passes one after another while they say there is more,
// and rests a second once one has caught up (rows that come due meanwhile are few).
//
// Between passes that say there is more it pauses twice as long as the pass worked (at least a
// few ms), so a purge catching up after a long stop takes at most a third of its thread and of
// the write lock: flat out, it cut the sends beside it by a fifth to a third
// (bench/steady-state.mjs), and a third of it still removes rows faster than sends write them.
// The pass's work, not its wall time: a pass waiting on sends' commits for the lock would
// otherwise pause longer, and fall behind exactly when sends are busiest. Work is a transaction's
// whole time, its commit included. A pass of several transactions may pause as long after each
// itself (SQLite's does: see createSqlitePurger); it then reports only the work since its last
// pause.
const REST_MS = 1_000;
const CATCH_UP_PAUSE_MS = 5;
/** ms of pause per ms of purge work */
export const PAUSE_PER_WORK_MS = 2;

export interface PurgeLoopOptions {
  /** one pass: deletes a batch of expired rows per table */
  purge: (nowMs: number) => Promise<PurgePass>;
  clock: Clock;
  onError: (error: unknown) => void;
  restMs?: number;
  catchUpPauseMs?: number;
}

/** Purges from now on until stopped; `stop` waits for a pass in flight. */
export function startPurgeLoop(options: PurgeLoopOptions): { stop(): Promise<void> } {
  const { purge, clock, onError } = options;
  const restMs = options.restMs ?? REST_MS;
  const catchUpPauseMs = options.catchUpPauseMs ?? CATCH_UP_PAUSE_MS;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let inFlight: Promise<void> = Promise.resolve();

  const pass = async () => {
    let pause = restMs;
    try {
      const { more, workMs } = await purge(clock.nowMs());
      if (more) pause = Math.max(catchUpPauseMs, PAUSE_PER_WORK_MS * workMs);
    } catch (error) {
      onError(error);
    }
    if (stopped) return;
    timer = setTimeout(run, pause);
    // Purging never keeps the process alive on its own.
    timer.unref();
  };
  const run = () => {
    inFlight = pass();
  };
  // A first pass at once: a process started after a pause catches up without waiting a rest.
  run();
  return {
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await inFlight;
    },
  };
}
