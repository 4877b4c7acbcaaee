/** Runs at most `slots` tasks at once; the rest wait their turn, first come first served. */
export interface Semaphore {
  run<T>(task: () => Promise<T>): Promise<T>;
  /** How many tasks wait for a slot now (those running not counted). */
  readonly waiting: number;
}

export function createSemaphore(slots: number): Semaphore {
  let running = 0;
  const queue: (() => void)[] = [];
  // A finished task hands its slot straight to the next in line, so none can jump the queue.
  const release = () => {
    const next = queue.shift();
    if (next) next();
    else running -= 1;
  };
  return {
    async run<T>(task: () => Promise<T>): Promise<T> {
      if (running < slots) running += 1;
      else await new Promise<void>((resolve) => queue.push(resolve));
      try {
        return await task();
      } finally {
        release();
      }
    },
    get waiting() {
      return queue.length;
    },
  };
}
