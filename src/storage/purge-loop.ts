import type { Clock } from "../core/ports.js";

// A store's purge removes a bounded batch per table, so one pass never holds a lock for long.
// Sends go on all day, though, so a pass every minute would fall behind any rate above a batch a
// minute: the loop runs passes one after another while they find rows, pausing briefly between
// them so other writers take the lock, and rests the interval once a pass finds nothing.
const REST_MS = 60_000;
const CATCH_UP_PAUSE_MS = 5;

export interface PurgeLoopOptions {
  /** one pass: deletes a batch of expired rows per table, resolves to how many went */
  purge: (nowMs: number) => Promise<number>;
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
    let removed = 0;
    try {
      removed = await purge(clock.nowMs());
    } catch (error) {
      onError(error);
    }
    if (stopped) return;
    timer = setTimeout(run, removed > 0 ? catchUpPauseMs : restMs);
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
