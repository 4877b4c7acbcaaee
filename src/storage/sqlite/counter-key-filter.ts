import { BEFORE_FIRST_COUNTER, KEYS_AFTER, KEYS_IN_SLICE, prepareSliceEnd } from "./counter-slices.js";
import type { SqliteDatabase } from "./sqlite-database.js";

// 2^24 bits (2 MiB) and 4 probes per generation: ~0.2% false "may exist" at a million keys.
const BITS_LOG2 = 24;
const PROBES = 4;
const KEYS_PER_GENERATION = 1_000_000;
// At most this many generations (6 MiB); past it the newest one takes every key and its false
// positives grow, which costs reads, never correctness.
const MAX_GENERATIONS = 3;
// Rows of the file looked at per slice: ~1 ms, so a request waits at most that long behind one.
// The first slices run before the server starts; the rest a pause apart, so that loading a busy
// file (two million live counters took the request thread ~3 s) takes a small share of the
// thread for longer instead of all of it while requests wait.
const LOAD_SLICE_ROWS = 1_000;
const LOAD_SLICES_AT_START = 100;
const LOAD_PAUSE_MS = 5;
// A row whose window ended this long before the load is not loaded: no request can count it any
// more, even if the clock steps back a little.
const DEAD_ROW_MARGIN_MS = 60_000;
// Counters with windows longer than this (weeks: a known-good number's) are kept in generations
// of their own: in a generation with the day's keys, one of them would keep it from being dropped
// for weeks, and once every generation was kept so, the newest would take every key and answer
// "may exist" for most. Their own generations fill slowly and are dropped when their weeks end.
const LONG_WINDOW_MS = 2 * 86_400_000;
const MAX_LONG_GENERATIONS = 2;

interface Generation {
  bits: Uint32Array;
  keys: number;
  /** the latest `reset_at` of a key added here: past it, every row this generation knows is dead */
  lastResetAtMs: number;
}

/** Generations of one kind of key (short or long windows), newest last; created on first use. */
interface Shelf {
  generations: Generation[];
  maxGenerations: number;
}

/**
 * Which counter rows may exist: a Bloom filter over `(app, key)`, fed by every statement that
 * writes a counter, so that a counter it has never seen is known to be zero without a read. Most
 * counters a request reads are new (a new recipient, a client address never seen), and reading
 * them was the larger part of refusing a flood from many addresses.
 *
 * It may say "may exist" for a key without a row (a rolled-back write, a purged row: one wasted
 * read) but never "absent" for a live one. Keys are forgotten a generation at a time: a generation
 * is dropped once every `reset_at` written to it has passed, because a row written again since
 * is in a newer generation with its new `reset_at`. Only this process writes counters (the CLI
 * does not), so nothing else can add a row behind its back.
 */
export function createCounterKeyFilter(
  db: SqliteDatabase,
  {
    keysPerGeneration = KEYS_PER_GENERATION,
    sliceRows = LOAD_SLICE_ROWS,
    slicesAtStart = LOAD_SLICES_AT_START,
    loadPauseMs = LOAD_PAUSE_MS,
    nowMs = Date.now,
  }: {
    keysPerGeneration?: number;
    sliceRows?: number;
    slicesAtStart?: number;
    loadPauseMs?: number;
    /** the store's clock: rows whose window it has seen end are not loaded */
    nowMs?: () => number;
  } = {},
) {
  const newGeneration = (): Generation => ({
    bits: new Uint32Array(2 ** (BITS_LOG2 - 5)),
    keys: 0,
    lastResetAtMs: 0,
  });
  const short: Shelf = { generations: [newGeneration()], maxGenerations: MAX_GENERATIONS };
  const long: Shelf = { generations: [], maxGenerations: MAX_LONG_GENERATIONS };

  /** Records a counter written with a window of `windowMs`, which ends at `resetAtMs`. */
  const add = (appId: string, key: string, resetAtMs: number, windowMs = 0) => {
    const shelf = windowMs > LONG_WINDOW_MS ? long : short;
    const { generations } = shelf;
    let current = generations[generations.length - 1];
    if (!current || (current.keys >= keysPerGeneration && generations.length < shelf.maxGenerations)) {
      current = newGeneration();
      generations.push(current);
    }
    hashKey(appId, key);
    for (let i = 0; i < PROBES; i++) {
      const bit = (h1 + Math.imul(i, h2)) >>> (32 - BITS_LOG2);
      current.bits[bit >>> 5] = (current.bits[bit >>> 5] as number) | (1 << (bit & 31));
    }
    current.keys += 1;
    if (resetAtMs > current.lastResetAtMs) current.lastResetAtMs = resetAtMs;
  };

  /** Whether a generation of `shelf` may hold the key last hashed; drops the dead ones first. */
  const shelfMayHold = (shelf: Shelf, nowMs: number): boolean => {
    let { generations } = shelf;
    if (generations.length > 1 && (generations[0] as Generation).lastResetAtMs <= nowMs) {
      generations = generations.filter((g, i) => i === generations.length - 1 || g.lastResetAtMs > nowMs);
      shelf.generations = generations;
    }
    for (const generation of generations) {
      let all = true;
      for (let i = 0; i < PROBES && all; i++) {
        const bit = (h1 + Math.imul(i, h2)) >>> (32 - BITS_LOG2);
        all = ((generation.bits[bit >>> 5] as number) & (1 << (bit & 31))) !== 0;
      }
      if (all) return true;
    }
    return false;
  };

  // The rows already in the file, read in key order a slice at a time: the first slices before
  // the server starts, the rest between requests, so a large file holds up neither. Until the last
  // slice is in, every key "may exist" and is read from the file, as without a filter; writes
  // meanwhile are added as always. Rows whose window has ended are passed over in SQLite (a purge
  // that is behind leaves millions). A file with more live counters than the generations hold
  // would only fill them with false "may exist": the load stops there, and counters are read from
  // the file as without a filter.
  let loaded = false;
  let loader: NodeJS.Timeout | null = null;
  const capacity = keysPerGeneration * MAX_GENERATIONS;
  let loadedKeys = 0;
  const sliceEnd = prepareSliceEnd(db);
  const liveInSlice = db
    .prepare(`SELECT app_id, key, reset_at FROM counters WHERE ${KEYS_IN_SLICE} AND reset_at > ?`)
    .raw();
  const liveAfter = db
    .prepare(`SELECT app_id, key, reset_at FROM counters WHERE ${KEYS_AFTER} AND reset_at > ?`)
    .raw();
  let after = BEFORE_FIRST_COUNTER;
  /** Loads one slice; "done" once the file is read, "full" once it holds more than the filter can. */
  const loadSlice = (): "more" | "done" | "full" => {
    const since = nowMs() - DEAD_ROW_MARGIN_MS;
    const end = sliceEnd(after, sliceRows);
    const rows = (end ? liveInSlice.all(...after, ...end, since) : liveAfter.all(...after, since)) as [
      string,
      string,
      number,
    ][];
    // (what is left of a row's window stands for its length: a long one near its end is short)
    for (const [appId, key, resetAtMs] of rows) add(appId, key, resetAtMs, resetAtMs - since);
    loadedKeys += rows.length;
    if (loadedKeys > capacity) return "full";
    if (!end) return "done";
    after = end;
    return "more";
  };
  /** After a slice: loaded once the file is read, the next slice a pause later while there is more. */
  const afterSlice = (outcome: ReturnType<typeof loadSlice>) => {
    if (outcome === "done") loaded = true;
    else if (outcome === "more") loader = setTimeout(loadInBackground, loadPauseMs).unref();
  };
  const loadInBackground = () => {
    loader = null;
    try {
      afterSlice(loadSlice());
    } catch {
      // The file was closed (shutdown) or failed: stay unloaded, which only costs reads.
    }
  };
  let outcome: ReturnType<typeof loadSlice> = "more";
  for (let slice = 0; slice < slicesAtStart && outcome === "more"; slice++) outcome = loadSlice();
  afterSlice(outcome);

  return {
    /** Records a counter write (call it with the row's `reset_at` and its window after every write). */
    add,
    /** False only when no row of this counter can exist. */
    mayExist(appId: string, key: string, nowMs: number): boolean {
      if (!loaded) return true;
      hashKey(appId, key);
      return shelfMayHold(short, nowMs) || (long.generations.length > 0 && shelfMayHold(long, nowMs));
    },
    /** Stops reading the file's rows (before the file is closed). */
    stop() {
      if (loader) clearTimeout(loader);
      loader = null;
    },
  };
}

export type CounterKeyFilter = ReturnType<typeof createCounterKeyFilter>;

// Two 32-bit hashes of `app \0 key` in one pass (FNV-1a with two multipliers, each finished
// with murmur3's mixer; double hashing derives the probes), left in module variables so that
// hashing allocates nothing.
let h1 = 0;
let h2 = 0;
function hashKey(appId: string, key: string): void {
  let a = 0x811c9dc5;
  let b = 0x050c5d1f;
  for (let i = 0; i < appId.length; i++) {
    a = Math.imul(a ^ appId.charCodeAt(i), 0x01000193);
    b = Math.imul(b ^ appId.charCodeAt(i), 0x5bd1e995);
  }
  a = Math.imul(a, 0x01000193); // the separator (a zero code unit)
  b = Math.imul(b, 0x5bd1e995);
  for (let i = 0; i < key.length; i++) {
    a = Math.imul(a ^ key.charCodeAt(i), 0x01000193);
    b = Math.imul(b ^ key.charCodeAt(i), 0x5bd1e995);
  }
  h1 = finish(a);
  // odd, so the probes of one key never coincide
  h2 = (finish(b) | 1) >>> 0;
}

function finish(hash: number): number {
  let h = hash ^ (hash >>> 16);
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}
