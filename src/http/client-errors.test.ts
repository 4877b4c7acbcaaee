import { connect } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import type { FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestServer, type TestServer } from "../../test/harness.js";
import { buildHttpApp } from "./app.js";

/**
 * What Node's HTTP parser refuses never reaches Fastify: it is answered by the app's
 * `clientErrorHandler`, over a real socket (inject skips the parser).
 */
let t: TestServer;
let port: number;
beforeAll(async () => {
  t = await createTestServer();
  await t.fastify.listen({ host: "127.0.0.1", port: 0 });
  port = (t.fastify.server.address() as { port: number }).port;
});
afterAll(() => t?.close());

interface RawAnswer {
  status: number;
  headers: Record<string, string>;
  body: string;
  /** the server closed the connection after it */
  closed: boolean;
}

// Between the pieces of a request written in several: each reaches the parser as a chunk of its own.
const PIECE_GAP_MS = 50;

/**
 * Writes `request` as is (a list: piece by piece, PIECE_GAP_MS apart) and reads the first answer:
 * until the server closes, or 200 ms after the whole body arrived (a kept-alive connection), or 2 s.
 */
function raw(request: string | Buffer | readonly string[], to = port): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const socket = connect(to, "127.0.0.1");
    let text = "";
    let timer = setTimeout(() => finish(false), 2_000);
    const parsed = () => {
      const [head = "", ...rest] = text.split("\r\n\r\n");
      const [statusLine = "", ...lines] = head.split("\r\n");
      const headers = Object.fromEntries(
        lines.map((line) => {
          const colon = line.indexOf(":");
          return [line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim()];
        }),
      );
      return { status: Number(statusLine.split(" ")[1]), headers, body: rest.join("\r\n\r\n") };
    };
    function finish(closed: boolean) {
      clearTimeout(timer);
      socket.destroy();
      resolve({ ...parsed(), closed });
    }
    socket.on("data", (chunk) => {
      text += chunk.toString("utf8");
      const { headers, body } = parsed();
      if (
        headers["content-length"] !== undefined &&
        Buffer.byteLength(body) >= Number(headers["content-length"])
      ) {
        clearTimeout(timer);
        timer = setTimeout(() => finish(false), 200);
      }
    });
    socket.on("close", () => finish(true));
    socket.on("error", reject);
    if (typeof request === "string" || Buffer.isBuffer(request)) socket.write(request);
    else
      void (async () => {
        for (const piece of request) {
          if (socket.destroyed) return;
          socket.write(piece);
          await sleep(PIECE_GAP_MS);
        }
      })();
  });
}

const hugeHeader = `X-Big: ${"b".repeat(17 * 1024)}\r\n`;

describe("a request Node's HTTP parser refuses", () => {
  // Regression: these were answered in Node's or Fastify's shape ({"error":"Bad Request","message":
  // "Client Error"}, or an empty 400), without x-request-id. @see fuzz review 4
  it.for([
    ["headers over 16 KiB", `POST /v1/verifications HTTP/1.1\r\nHost: x\r\n${hugeHeader}\r\n`, 431],
    [
      "a malformed chunk size",
      "POST /v1/verifications HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
      400,
    ],
    ["an obsolete folded header", "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n", 400],
    ["a request line that is no HTTP", "HELLO\r\n\r\n", 400],
  ] as const)("answers %s in problem+json with a request id, and closes", async ([, request, status]) => {
    const answer = await raw(request);
    expect(answer.status, answer.body).toBe(status);
    expect(answer.headers["content-type"]).toMatch(/^application\/problem\+json/);
    expect(answer.headers["x-request-id"]).toMatch(/^[0-9a-f]{10}-[0-9a-z]+$/);
    expect(JSON.parse(answer.body)).toMatchObject({ status, code: "VALIDATION_FAILED" });
    expect(answer.closed).toBe(true);
  });

  it("answers in the shape of the face the request line names", async () => {
    const native = await raw(`GET /v1/verifications/vf_x HTTP/1.1\r\nHost: x\r\n${hugeHeader}\r\n`);
    expect(JSON.parse(native.body)).toMatchObject({
      title: "Request Header Fields Too Large",
      status: 431,
      field: "headers",
      detail: "The request line and headers are larger than 16 KiB",
    });
    const cloudbase = await raw(`POST /auth/v1/verification HTTP/1.1\r\nHost: x\r\n${hugeHeader}\r\n`);
    expect(cloudbase.status).toBe(431);
    expect(JSON.parse(cloudbase.body)).toMatchObject({
      error: "invalid_argument",
      error_code: 4000,
      error_description: "The request line and headers are larger than 16 KiB",
    });
    const idaas = await raw("GET /api/v2/sdk/captcha HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n");
    expect(idaas.status).toBe(400);
    expect(JSON.parse(idaas.body)).toMatchObject({ error_code: "IDAAS.SDK.PARAM.1001" });
    const fresns = await raw("GET /api/v2/account/detail HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n");
    expect(fresns.status).toBe(400);
    expect(JSON.parse(fresns.body)).toEqual({
      code: 30000,
      message: "The request is not valid HTTP/1.1",
      data: null,
    });
    for (const answer of [cloudbase, idaas, fresns]) {
      expect(answer.headers["x-request-id"]).toEqual(expect.any(String));
      expect(answer.closed).toBe(true);
    }
  });

  // Regression: Node answered an empty 400 of its own. @see fuzz review 4
  it("answers an HTTP/1.1 request without Host in the face's shape, with a request id", async () => {
    const native = await raw("GET /v1/verifications/vf_x HTTP/1.1\r\n\r\n");
    expect(native.status, native.body).toBe(400);
    expect(native.headers["x-request-id"]).toEqual(expect.any(String));
    expect(JSON.parse(native.body)).toMatchObject({
      status: 400,
      code: "VALIDATION_FAILED",
      field: "host",
      detail: "An HTTP/1.1 request must carry a Host header",
    });
    const cloudbase = await raw("POST /auth/v1/verification HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    expect(cloudbase.status, cloudbase.body).toBe(400);
    expect(JSON.parse(cloudbase.body)).toMatchObject({ error: "invalid_argument", error_code: 4000 });
    // HTTP/1.0 has no Host to require.
    const older = await raw("GET /healthz HTTP/1.0\r\n\r\n");
    expect(older.status, older.body).toBe(200);
  });
});

// Regression: the path was read from the start of the chunk the parser failed in (`rawPacket`), so
// a request that arrived in pieces, and every timeout, was answered as native whatever its path
// named. @see review of 0870546
describe("a refused request that arrived in pieces", () => {
  const cloudbaseHead =
    "POST /auth/v1/verification HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n";

  it("is answered in the face of the path its complete headers named", async () => {
    const cloudbase = await raw([`${cloudbaseHead}Transfer-Encoding: chunked\r\n\r\n`, "zz\r\n"]);
    expect(cloudbase.status, cloudbase.body).toBe(400);
    expect(JSON.parse(cloudbase.body)).toMatchObject({
      error: "invalid_argument",
      error_code: 4000,
      error_description: "The request is not valid HTTP/1.1",
    });
    const fresns = await raw([
      "POST /api/v2/account/login?x=1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
      "zz\r\n",
    ]);
    expect(fresns.status, fresns.body).toBe(400);
    expect(JSON.parse(fresns.body)).toMatchObject({ code: 30000 });
    expect(cloudbase.closed && fresns.closed).toBe(true);
  });

  // Characterisation: what the parser refuses before the headers are complete names a path only in
  // the chunk that holds the request line; past it, none is known.
  it("is answered as native when its headers never completed and the request line came before", async () => {
    const answer = await raw([cloudbaseHead, `${hugeHeader}\r\n`]);
    expect(answer.status, answer.body).toBe(431);
    expect(answer.headers["content-type"]).toMatch(/^application\/problem\+json/);
  });
});

describe("a request that did not arrive in time", () => {
  // The harness's server keeps the 30-s request timeout: an app of its own is built with a short one
  // over the same engine.
  let quick: FastifyInstance;
  let quickPort: number;
  beforeAll(async () => {
    quick = await buildHttpApp({
      engine: t.engine,
      logger: t.fastify.log,
      devMode: true,
      devInbox: t.server.backend.devInbox,
      defaultCountry: "CN",
      trustProxy: [],
      disposableEmailDomains: [],
      ready: async () => true,
      requestTimeoutMs: 300,
    });
    await quick.listen({ host: "127.0.0.1", port: 0 });
    quickPort = (quick.server.address() as { port: number }).port;
  });
  afterAll(() => quick?.close());

  // Regression: a timeout has no rawPacket, so every 408 was problem+json. @see review of 0870546
  it("is answered 408 in the face its complete headers named, and closed", async () => {
    const answer = await raw(
      "POST /auth/v1/verification HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10\r\n\r\n{",
      quickPort,
    );
    expect(answer.status, answer.body).toBe(408);
    expect(JSON.parse(answer.body)).toMatchObject({
      error: "invalid_argument",
      error_description: "The request did not arrive in time",
    });
    expect(answer.headers["x-request-id"]).toEqual(expect.any(String));
    expect(answer.closed).toBe(true);
  });

  // Characterisation: with its headers unfinished, the request names no path Node gives.
  it("is answered 408 as native when its headers did not complete", async () => {
    const answer = await raw("POST /auth/v1/verification HTTP/1.1\r\nHost: x\r\n", quickPort);
    expect(answer.status, answer.body).toBe(408);
    expect(JSON.parse(answer.body)).toMatchObject({
      status: 408,
      code: "VALIDATION_FAILED",
      field: "request",
    });
  });
});
