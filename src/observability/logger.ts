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

/** The process logger: pino JSON to stdout, asynchronous so logging never blocks a request. */
export function createLogger(options: { level: string; devCodes: boolean }): RootLogger {
  return pino(
    {
      level: options.level,
      base: { service: "verifyd" },
      // In dev mode the dev sender prints codes on purpose; elsewhere `code` is always redacted.
      redact: {
        paths: options.devCodes ? REDACTED_PATHS.filter((path) => path !== "code") : REDACTED_PATHS,
        censor: "[redacted]",
      },
    },
    pino.destination({ dest: 1, sync: false }),
  );
}

/** A core Logger over pino (the argument order is the same). */
export function asCoreLogger(logger: RootLogger): Logger {
  return logger;
}
