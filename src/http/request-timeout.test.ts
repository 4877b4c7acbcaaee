import { connect } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { createTestServer, type TestServer } from "../../test/harness.js";
import { REQUEST_TIMEOUT_MS } from "./app.js";

let t: TestServer | undefined;
afterEach(async () => {
  await t?.close().catch(() => {});
  t = undefined;
});

describe("a client that stalls its request", () => {
  it("is cut off by a shutdown, which then ends (and times out after 30 s while serving)", {
    timeout: 20_000,
  }, async () => {
    t = await createTestServer({ drainMs: 500 });
    const server = t.fastify.server;
    expect(server.requestTimeout).toBe(REQUEST_TIMEOUT_MS);
    // Regression: Node's 60 s for headers held a stalled body past requestTimeout, for 60 s.
    expect(server.headersTimeout).toBe(10_000);
    await t.fastify.listen({ host: "127.0.0.1", port: 0 });
    const { port } = server.address() as { port: number };

    // headers and 11 of 80 body bytes, then nothing
    const socket = connect(port, "127.0.0.1");
    let answer = "";
    socket.on("data", (chunk) => {
      answer += String(chunk);
    });
    const ended = new Promise<void>((resolve) => socket.on("close", () => resolve()));
    socket.write(
      'POST /v1/verifications HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 80\r\n\r\n{"channel":',
    );
    await new Promise((resolve) => setTimeout(resolve, 100));
    const started = Date.now();
    await t.close();
    t = undefined;
    await ended;
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(answer).toBe(""); // never answered: its request never arrived
  });
});
