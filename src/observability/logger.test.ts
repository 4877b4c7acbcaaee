import { hostname } from "node:os";
import { Writable } from "node:stream";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { createLogger, REDACTED_PATHS } from "./logger.js";

/** The lines a logger with verifyd's redaction writes. */
function capture(): { logger: pino.Logger; lines: string[] } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _encoding, done) {
      lines.push(String(chunk));
      done();
    },
  });
  return { logger: pino({ redact: { paths: REDACTED_PATHS, censor: "[redacted]" } }, stream), lines };
}

describe("the log's redaction", () => {
  it("keeps a provider URL's credentials out of the error a URL that does not parse raises", () => {
    const { logger, lines } = capture();
    let failure: unknown;
    try {
      new URL("smtp://mailer:Tr0ub4dor#3@smtp.example.com:587");
    } catch (error) {
      failure = error;
    }
    logger.error({ err: failure }, "the delivery thread failed");
    expect(lines.join("")).toContain("ERR_INVALID_URL");
    expect(lines.join("")).not.toContain("Tr0ub4dor");
  });

  it("keeps codes, tokens, passwords and keys out", () => {
    const { logger, lines } = capture();
    logger.info({ code: "042917", token: "vt_secret", password: "hunter2", apiKey: "vk_secret" }, "x");
    for (const secret of ["042917", "vt_secret", "hunter2", "vk_secret"])
      expect(lines.join("")).not.toContain(secret);
  });
});

describe("the process logger", () => {
  it("names the process and host on every line, beside the service", () => {
    const lines: string[] = [];
    const stream = new Writable({
      write(chunk, _encoding, done) {
        lines.push(String(chunk));
        done();
      },
    });
    const logger = createLogger({ level: "info", devCodes: false }, stream);
    logger.info({ provider: "twilio" }, "x");
    expect(JSON.parse(lines[0] ?? "{}")).toMatchObject({
      service: "verifyd",
      pid: process.pid,
      hostname: hostname(),
      provider: "twilio",
    });
  });
});
