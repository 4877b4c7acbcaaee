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

/** A core Logger over pino (the argument order is the same). */
export function asCoreLogger(logger: RootLogger): Logger {
  return logger;
}
