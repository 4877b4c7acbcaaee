import { execFileSync } from "node:child_process";
import { createReadStream, mkdtempSync, rmSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { closeLogger, createForwardingDestination, createLogger, writeForwardedLines } from "./logger.js";

/** The lines the process logger writes, as production (or, `devCodes`, dev mode) makes it. */
function capture(devCodes = false): { logger: pino.Logger; lines: string[] } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _encoding, done) {
      lines.push(String(chunk));
      done();
    },
  });
  return { logger: createLogger({ level: "info", devCodes }, stream), lines };
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

  // Regression guard: these tests built a pino of their own, so the process logger's choice of what
  // to redact in which mode could change with every test green.
  it("keeps codes, tokens, passwords and keys out", () => {
    const { logger, lines } = capture();
    logger.info({ code: "042917", token: "vt_secret", password: "hunter2", apiKey: "vk_secret" }, "x");
    for (const secret of ["042917", "vt_secret", "hunter2", "vk_secret"])
      expect(lines.join("")).not.toContain(secret);
  });

  it("shows a code in dev mode only, where the dev sender prints it on purpose, and nothing else", () => {
    const { logger, lines } = capture(true);
    logger.info({ code: "042917", token: "vt_secret", password: "hunter2", apiKey: "vk_secret" }, "x");
    expect(JSON.parse(lines[0] ?? "{}").code).toBe("042917");
    for (const secret of ["vt_secret", "hunter2", "vk_secret"]) expect(lines.join("")).not.toContain(secret);
  });
});

describe("the process logger", () => {
  it("names the process and host on every line, beside the service", () => {
    const { logger, lines } = capture();
    logger.info({ provider: "twilio" }, "x");
    expect(JSON.parse(lines[0] ?? "{}")).toMatchObject({
      service: "verifyd",
      pid: process.pid,
      hostname: hostname(),
      provider: "twilio",
    });
  });
});

// Regression: the delivery thread wrote stdout through a destination of its own, beside the main
// thread's; on a pipe that filled up, their lines tore into one another. @see logs review 2
describe("a worker thread's forwarded lines", () => {
  const turn = () => new Promise((resolve) => setImmediate(resolve));

  it("go over in one batch a turn, whole and in order, at the level the thread's logger has", async () => {
    const posted: string[] = [];
    const logger = createLogger(
      { level: "info", devCodes: false },
      createForwardingDestination((lines) => posted.push(lines)),
    );
    logger.debug("not at this level");
    for (let i = 0; i < 3; i++) logger.info({ i }, "line");
    expect(posted).toEqual([]); // nothing posted line by line
    await turn();
    expect(posted).toHaveLength(1);
    const lines = (posted[0] ?? "").split("\n");
    expect(lines.pop()).toBe("");
    expect(lines.map((line) => JSON.parse(line).i)).toEqual([0, 1, 2]);
  });

  it("go at once, cut between lines, when a batch grows large", () => {
    const posted: string[] = [];
    const logger = createLogger(
      { level: "info", devCodes: false },
      createForwardingDestination((lines) => posted.push(lines)),
    );
    for (let i = 0; i < 200; i++) logger.info({ i, pad: "x".repeat(1_000) }, "line");
    expect(posted.length).toBeGreaterThan(1);
    for (const batch of posted) {
      expect(batch.endsWith("\n")).toBe(true);
      for (const line of batch.trimEnd().split("\n")) expect(() => JSON.parse(line)).not.toThrow();
    }
  });

  it("are handed over by a flush before its callback, so a thread's last lines precede its goodbye", () => {
    const events: string[] = [];
    const logger = createLogger(
      { level: "info", devCodes: false },
      createForwardingDestination((lines) => events.push(JSON.parse(lines).msg)),
    ).child({ thread: "delivery" });
    logger.info("the last line");
    logger.flush(() => events.push("stopped"));
    expect(events).toEqual(["the last line", "stopped"]);
  });

  it("are written to the main logger's own destination, through a child too, one writer for both threads", () => {
    const { logger: main, lines: writes } = capture();
    main.info("main");
    writeForwardedLines(main.child({ component: "x" }), '{"msg":"a"}\n{"msg":"b"}\n');
    expect(
      writes.map((chunk) =>
        chunk
          .trimEnd()
          .split("\n")
          .map((line) => JSON.parse(line).msg),
      ),
    ).toEqual([["main"], ["a", "b"]]);
  });
});

describe("closeLogger", () => {
  // Regression: the CLI exited in pino's flush callback, which comes at once with the default
  // destination: the lines still waiting on a full stdout pipe were lost with the process.
  it("calls back once every line reached a slow pipe, not before", { timeout: 20_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), "verifyd-logpipe-"));
    const fifo = join(dir, "stdout");
    execFileSync("mkfifo", [fifo]);
    const reader = createReadStream(fifo);
    reader.pause();
    let received = "";
    reader.on("data", (chunk) => {
      received += String(chunk);
    });
    const ended = new Promise<void>((resolve) => reader.once("end", () => resolve()));
    const destination = pino.destination({ dest: fifo, sync: false });
    await new Promise((resolve) => destination.once("ready", resolve));
    const logger = createLogger({ level: "info", devCodes: false }, destination);
    const lines = 3_000;
    for (let n = 0; n < lines; n++) logger.info({ n, pad: "x".repeat(100) }, "a line");
    // the pipe holds 64 KiB; ~450 KB are logged: most wait in the destination, a chunk on EAGAIN
    setTimeout(() => reader.resume(), 300);
    await new Promise<void>((resolve) => closeLogger(logger, 10_000, resolve));
    // What an exit at this moment keeps: what reached the pipe. Read it all, then count.
    if (!(destination as unknown as { destroyed: boolean }).destroyed) destination.destroy();
    await ended;
    const total = received.split("\n").filter(Boolean).length;
    rmSync(dir, { recursive: true, force: true });
    expect(total).toBe(lines);
  });
});
