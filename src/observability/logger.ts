import type { EventEmitter } from "node:events";
import { hostname } from "node:os";
import { pino } from "pino";
import type { Logger } from "../core/ports.js";

/** Paths never logged in clear (STYLE.md §7); the dev sender's code line is the one exception. */
export const REDACTED_PATHS = [
  "req.headers.authorization",
  'req.headers["x-captcha-token"]',
  'req.headers["x-fresns-aid-token"]',
  'req.headers["x-fresns-uid-token"]',
  "code",
  "token",
  "password",
  "apiKey",
  // Node's URL errors carry the URL they could not parse, and a provider's holds its credentials.
  "err.input",
];

export type RootLogger = pino.Logger;

/**
 * The process logger: pino JSON to stdout, asynchronous so logging never blocks a request (tests
 * pass a `destination` of their own). Every line names the process that wrote it, so the lines of a
 * cluster's processes, or of one host's restarts, can be told apart.
 */
export function createLogger(
  options: { level: string; devCodes: boolean },
  destination: pino.DestinationStream = pino.destination({ dest: 1, sync: false }),
): RootLogger {
  return pino(
    {
      level: options.level,
      base: { service: "verifyd", pid: process.pid, hostname: hostname() },
      // In dev mode the dev sender prints codes on purpose; elsewhere `code` is always redacted.
      redact: {
        paths: options.devCodes ? REDACTED_PATHS.filter((path) => path !== "code") : REDACTED_PATHS,
        censor: "[redacted]",
      },
    },
    destination,
  );
}

// A batch is handed over at the end of the thread's turn; one this large goes at once, so that a
// burst of lines does not hold memory for a whole turn or make one huge message.
const FORWARD_BATCH_CHARS = 64 * 1024;

/** A pino destination that hands its lines to another thread; `flush` hands over what is pending. */
export interface ForwardingDestination extends pino.DestinationStream {
  flush(callback?: (error?: Error) => void): void;
}

/**
 * A destination for a worker thread's logger that writes nothing itself: its serialised lines go,
 * whole and in order, to `post` (the thread's port), and the main thread writes them to its own
 * destination (`writeForwardedLines`). A process then has one writer of stdout: two threads each
 * writing it asynchronously tore lines into one another on a pipe that filled up. Lines are
 * batched per turn of the thread's event loop, so a busy thread sends the main thread a few
 * messages a second rather than one a line; posting never blocks the thread. Whoever ends the
 * thread flushes first (`logger.flush`), and should also flush on its `exit`, so that the lines of
 * a thread that dies of an uncaught error still arrive.
 */
export function createForwardingDestination(post: (lines: string) => void): ForwardingDestination {
  let pending = "";
  let scheduled = false;
  const flush = () => {
    scheduled = false;
    if (pending === "") return;
    const lines = pending;
    pending = "";
    post(lines);
  };
  return {
    write(line: string) {
      pending += line;
      if (pending.length >= FORWARD_BATCH_CHARS) flush();
      else if (!scheduled) {
        scheduled = true;
        setImmediate(flush);
      }
    },
    flush(callback) {
      flush();
      callback?.();
    },
  };
}

/** Writes lines a worker thread forwarded (`createForwardingDestination`) to `logger`'s own destination. */
export function writeForwardedLines(logger: RootLogger, lines: string): void {
  const destination = destinationOf(logger) as (pino.DestinationStream & { destroyed?: boolean }) | undefined;
  // (a thread still running when the process's log was closed for its exit: its lines go with it)
  if (!destination?.destroyed) destination?.write(lines);
}

/**
 * Writes every line `logger` still holds, then calls `done`, within `timeoutMs` at most (a stdout
 * nobody reads must not hold up an exit). pino's `flush` calls back at once with its default
 * destination, so lines waiting on a full stdout pipe were lost when the process exited after it.
 * Nothing may be logged once this is called.
 */
export function closeLogger(logger: RootLogger, timeoutMs: number, done: () => void): void {
  const destination = destinationOf(logger) as
    | (pino.DestinationStream & Partial<EventEmitter> & { end?: () => void })
    | undefined;
  let called = false;
  const finish = () => {
    if (called) return;
    called = true;
    clearTimeout(timer);
    done();
  };
  const timer = setTimeout(finish, timeoutMs);
  if (destination?.end === undefined || destination.once === undefined) {
    logger.flush(() => finish());
    return;
  }
  destination.once("close", finish);
  destination.once("error", finish);
  destination.end();
}

/** The stream a logger writes to (a child logger reaches its root's through the same symbol). */
function destinationOf(logger: RootLogger): pino.DestinationStream | undefined {
  return (logger as unknown as Record<symbol, pino.DestinationStream>)[pino.symbols.streamSym];
}

/** A core Logger over pino (the argument order is the same). */
export function asCoreLogger(logger: RootLogger): Logger {
  return logger;
}
