/**
 * Group commit (DESIGN.md "Durable"): items handed in together (in the same turn of the event
 * loop, or while earlier batches are being written) are written by one statement, one commit, one
 * fsync; each caller is resolved only after that commit, or rejected if it failed. An idle batcher
 * writes a lone item at once, so batching adds no delay at low load and saves commits at high load.
 */
export interface Batcher<Item> {
  /** Resolves once the item's batch is committed; rejects if that batch failed. */
  add(item: Item): Promise<void>;
  /** Resolves when everything handed in so far is committed or failed. */
  drain(): Promise<void>;
}

interface Pending<Item> {
  item: Item;
  resolve: () => void;
  reject: (error: unknown) => void;
  /** when it was handed in (`Date.now()`), for `maxWaitMs` */
  addedAtMs: number;
}

export interface BatcherOptions {
  /** batches written at the same time (each holds one pool connection) */
  maxConcurrent: number;
  /** past this many items a batch is split: a huge statement holds its connection too long */
  maxItems: number;
  /**
   * Whether a batch's failure may come from one item's data (a value the database refuses):
   * then its items are written again one at a time, so only the bad ones fail. Not for errors
   * of the whole batch (connection, timeout), which would only repeat once per item.
   */
  retryAloneWhen?: (error: unknown) => boolean;
  /**
   * An item still queued (not yet in a statement) this long after it was handed in is rejected
   * with `waitedTooLong()` instead of written: behind batches that stall, a caller's wait stays
   * bounded, and it knows nothing of its item was sent.
   */
  maxWaitMs?: number;
  waitedTooLong?: () => unknown;
}

/**
 * Batches `add` calls into `write(items)` calls. A failed write fails every item in it: callers
 * of the request path then answer 503, so one statement must only fail for reasons that concern
 * the whole batch (connection, timeout), never for one item's data. Where an item's data could
 * still fail it (values from outside), `retryAloneWhen` writes the items of such a batch alone.
 */
export function createBatcher<Item>(
  write: (items: Item[]) => Promise<unknown>,
  options: BatcherOptions,
): Batcher<Item> {
  let queue: Pending<Item>[] = [];
  let inFlight = 0;
  let scheduled = false;
  let idle: (() => void)[] = [];

  const writeBatch = async (batch: Pending<Item>[]) => {
    try {
      await write(batch.map((pending) => pending.item));
      for (const pending of batch) pending.resolve();
    } catch (error) {
      if (batch.length > 1 && options.retryAloneWhen?.(error)) {
        // One at a time in this batch's slot: the connections in use stay at maxConcurrent.
        for (const pending of batch) {
          await write([pending.item]).then(pending.resolve, pending.reject);
        }
      } else {
        for (const pending of batch) pending.reject(error);
      }
    }
    finished();
  };

  const finished = () => {
    inFlight -= 1;
    if (queue.length > 0) schedule();
    else wakeDrainsIfIdle();
  };

  const wakeDrainsIfIdle = () => {
    if (queue.length > 0 || inFlight > 0) return;
    for (const resolve of idle) resolve();
    idle = [];
  };

  const flush = () => {
    scheduled = false;
    if (options.maxWaitMs !== undefined) rejectWaitedTooLong(options.maxWaitMs);
    while (queue.length > 0 && inFlight < options.maxConcurrent) {
      const batch = queue.slice(0, options.maxItems);
      queue = queue.slice(batch.length);
      inFlight += 1;
      void writeBatch(batch);
    }
    wakeDrainsIfIdle();
  };

  // The queue is in the order items were handed in, so the ones waited too long are at its head.
  const rejectWaitedTooLong = (maxWaitMs: number) => {
    const oldestKept = Date.now() - maxWaitMs;
    let stale = 0;
    while (stale < queue.length && (queue[stale]?.addedAtMs ?? 0) < oldestKept) stale += 1;
    if (stale === 0) return;
    for (const pending of queue.slice(0, stale)) {
      pending.reject(options.waitedTooLong?.() ?? new Error(`waited over ${maxWaitMs} ms to be written`));
    }
    queue = queue.slice(stale);
  };

  // setImmediate runs after the current I/O phase: every caller whose previous step (a Redis
  // reply, an HTTP body) arrived in this turn of the event loop joins the same batch.
  const schedule = () => {
    if (scheduled) return;
    scheduled = true;
    setImmediate(flush);
  };

  return {
    add(item) {
      return new Promise<void>((resolve, reject) => {
        queue.push({ item, resolve, reject, addedAtMs: Date.now() });
        schedule();
      });
    },
    drain() {
      if (queue.length === 0 && inFlight === 0) return Promise.resolve();
      return new Promise<void>((resolve) => idle.push(resolve));
    },
  };
}

/** Turns rows into one array per column, for `INSERT … SELECT … FROM unnest($1::t[], …)`. */
export function columnsOf<Row extends unknown[]>(rows: Row[], width: number): unknown[][] {
  const columns: unknown[][] = Array.from({ length: width }, () => []);
  for (const row of rows) {
    for (let index = 0; index < width; index += 1) columns[index]?.push(row[index]);
  }
  return columns;
}
