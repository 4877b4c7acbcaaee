import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import Database from "better-sqlite3";
import type { FastifyRequest } from "fastify";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { FixedClock } from "../../../test/fakes/fixed-clock.js";
import { loadConfig } from "../../config/load.js";
import { OtpError } from "../../core/errors.js";
import { createLogger } from "../../observability/logger.js";
import { assembleServer, type RunningServer } from "../../server.js";
import { sqliteBackendOf } from "../../storage/sqlite/index.js";
import { answeredError } from "./answered-errors.js";

// The log review: a backend outage wrote a ~1 KB warn line with the driver's stack for every
// request it failed (~1 MB/s at 800 failures/s), while refused requests wrote nothing at all, so
// a flood of them went unnoticed. @see log review, HTTP findings 1 and 2
describe("what the faces' answered errors leave in the log", () => {
  let dataDir: string;
  let server: RunningServer;
  let lines: Record<string, unknown>[];
  let raw: string;
  let client = 0;
  const clock = new FixedClock();

  beforeEach(async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "setInterval", "clearInterval"] });
    dataDir = mkdtempSync(join(tmpdir(), "verifyd-answered-"));
    lines = [];
    raw = "";
    const stream = new Writable({
      write(chunk, _encoding, done) {
        raw += String(chunk);
        lines.push(JSON.parse(String(chunk)));
        done();
      },
    });
    const config = loadConfig({ VERIFYD_DATA_DIR: dataDir, VERIFYD_LOG_LEVEL: "info" });
    server = await assembleServer({
      config,
      logger: createLogger({ level: "info", devCodes: false }, stream),
      clock,
    });
    await server.fastify.ready();
    lines.length = 0;
    raw = "";
  });
  afterEach(async () => {
    vi.useRealTimers();
    await server.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  const inject = (method: "GET" | "POST", url: string, payload?: object, headers?: Record<string, string>) =>
    server.fastify.inject({
      method,
      url,
      remoteAddress: `10.9.${++client}.1`,
      ...(payload ? { payload } : {}),
      ...(headers ? { headers } : {}),
    });
  const linesWith = (message: string) => lines.filter((line) => line.msg === message);

  /** From now on every read on the server's connection fails as a failing disk's would (by default). */
  const failReads = (error: Error = new Database.SqliteError("disk I/O error", "SQLITE_IOERR_READ")) => {
    const { db } = sqliteBackendOf(server.backend);
    const statement = Object.getPrototypeOf(db.prepare("SELECT 1")) as Record<string, unknown>;
    const originals = { get: statement.get, all: statement.all } as Record<
      string,
      (...args: unknown[]) => unknown
    >;
    for (const name of ["get", "all"] as const) {
      statement[name] = function (this: { database: unknown }, ...args: unknown[]) {
        if (this.database === db) throw error;
        return originals[name]?.apply(this, args);
      };
    }
    return () => Object.assign(statement, originals);
  };

  it("logs a backend outage once, without a stack, then once a minute with how many it failed", async () => {
    const sent = await inject("POST", "/v1/verifications", {
      channel: "email",
      to: "ann@example.com",
      purpose: "sign_in",
    });
    expect(sent.statusCode, sent.body).toBe(201);
    const id = String(sent.json().id);
    const restore = failReads();
    try {
      const answers = [];
      for (let i = 0; i < 20; i++) {
        answers.push(await inject("GET", `/v1/verifications/${id}`));
        answers.push(await inject("POST", "/v1/verifications/check", { id, code: "000000" }));
        answers.push(
          await inject("POST", "/api/v2/common/send-verify-code", {
            type: "email",
            useType: 5,
            templateId: 1,
            account: `fresns-${i}@example.com`,
          }),
        );
      }
      expect(answers.map((answer) => answer.statusCode)).toEqual(
        answers.map((_answer, i) => (i % 3 === 2 ? 200 : 503)),
      );
      const first = linesWith("backend error");
      expect(first).toHaveLength(1);
      expect(first[0]).toMatchObject({
        level: 40,
        error: "STORE_UNAVAILABLE",
        internal: expect.stringContaining("disk I/O error"),
        suppressed: 0,
        reqId: expect.any(String),
      });
      expect(first[0]).not.toHaveProperty("err");
      expect(raw).not.toMatch(/\n\s+at /);

      // the minute's end tells how many failed since
      vi.advanceTimersByTime(60_000);
      expect(linesWith("backend error")).toMatchObject([{ suppressed: 0 }, { suppressed: 59 }]);
      // a quiet minute forgets the fault: its return is told at once
      vi.advanceTimersByTime(60_000);
      await inject("GET", `/v1/verifications/${id}`);
      expect(linesWith("backend error")).toMatchObject([
        { suppressed: 0 },
        { suppressed: 59 },
        { suppressed: 0 },
      ]);
      expect(raw.length).toBeLessThan(8_000);
    } finally {
      restore();
    }
  });

  // @see final review 3: a keyed retry told its first send is still being committed (a minute,
  // while a lost commit settles) was logged as a backend error, reading as an outage.
  it("only counts an answer core gives on purpose under a fault's code: nothing failed", () => {
    const request = { server: server.fastify, log: server.fastify.log } as unknown as FastifyRequest;
    const inProgress = new OtpError("STORE_UNAVAILABLE", {
      message: "The first request with this Idempotency-Key is still being committed; try again shortly",
      details: { retryAfterSeconds: 1 },
    });
    answeredError(request, "native", inProgress);
    expect(linesWith("backend error")).toEqual([]);
    answeredError(
      request,
      "native",
      new OtpError("STORE_UNAVAILABLE", { internal: "redis: connection lost" }),
    );
    expect(linesWith("backend error")).toMatchObject([
      { error: "STORE_UNAVAILABLE", internal: "redis: connection lost" },
    ]);
  });

  it("still logs each bug with its stack", async () => {
    const sent = await inject("POST", "/v1/verifications", {
      channel: "email",
      to: "ann@example.com",
      purpose: "sign_in",
    });
    const restore = failReads(new TypeError("a bug"));
    try {
      for (let i = 0; i < 3; i++) {
        expect((await inject("GET", `/v1/verifications/${sent.json().id}`)).statusCode).toBe(500);
      }
    } finally {
      restore();
    }
    const bugs = linesWith("unexpected error");
    expect(bugs).toHaveLength(3);
    expect(bugs[0]).toMatchObject({
      level: 50,
      err: { message: "a bug", stack: expect.stringContaining(" at ") },
    });
  });

  it("tallies refused requests by face, app and code in one line a minute", async () => {
    const send = (to: string, headers?: Record<string, string>) =>
      inject("POST", "/v1/verifications", { channel: "email", to, purpose: "sign_in" }, headers);
    expect((await send("bob@example.com")).statusCode).toBe(201);
    // resent too soon
    for (let i = 0; i < 3; i++) expect((await send("bob@example.com")).statusCode).toBe(429);
    // bad input
    for (let i = 0; i < 2; i++) expect((await send("not an email")).statusCode).toBe(400);
    // a key no app has
    expect((await send("bob@example.com", { authorization: "Bearer vk_nosuchkey" })).statusCode).toBe(401);
    // guessed ids
    for (let i = 0; i < 4; i++) {
      const check = await inject("POST", "/v1/verifications/check", { id: `vf_guess${i}`, code: "123456" });
      expect(check.statusCode).toBe(404);
    }
    // an unknown app on CloudBase; IDaaS without its device headers; an unknown Fresns path
    for (let i = 0; i < 2; i++) {
      const unknown = await inject("POST", `/auth/v1/verification?client_id=nosuch${i}`, {
        email: "a@example.com",
      });
      expect(unknown.statusCode).toBe(404);
    }
    expect((await inject("POST", "/api/v2/sdk/email/send", {})).statusCode).toBe(400);
    expect((await inject("GET", "/api/v2/nothing-here")).json()).toMatchObject({ code: 404 });

    expect(linesWith("requests refused")).toEqual([]);
    clock.advanceSeconds(60);
    vi.advanceTimersByTime(60_000);
    const tally = linesWith("requests refused");
    expect(tally).toHaveLength(1);
    expect(tally[0]).toMatchObject({ level: 30, refused: 14, seconds: 60 });
    expect(new Set(tally[0]?.refusals as unknown[])).toEqual(
      new Set([
        { face: "native", app: "default", code: "RESEND_TOO_SOON", count: 3 },
        { face: "native", app: "default", code: "VALIDATION_FAILED", count: 2 },
        { face: "native", app: "-", code: "UNAUTHENTICATED", count: 1 },
        { face: "native", app: "default", code: "VERIFICATION_NOT_FOUND", count: 4 },
        { face: "cloudbase", app: "-", code: "APP_NOT_FOUND", count: 2 },
        { face: "idaas", app: "-", code: "IDAAS.SDK.PARAM.0001", count: 1 },
        { face: "fresns", app: "-", code: "ROUTE_NOT_FOUND", count: 1 },
      ]),
    );
    // counted afresh: a quiet minute writes nothing
    vi.advanceTimersByTime(60_000);
    expect(linesWith("requests refused")).toHaveLength(1);
    // and what the minute holds at shutdown is told
    expect((await send("not an email")).statusCode).toBe(400);
    await server.close();
    expect(linesWith("requests refused")).toMatchObject([
      { refused: 14 },
      { refused: 1, refusals: [{ code: "VALIDATION_FAILED", count: 1 }] },
    ]);
  });
});
