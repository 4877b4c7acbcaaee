import { connect } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { createTestServer, type TestServer } from "../../test/harness.js";

let t: TestServer | undefined;
afterEach(async () => {
  await t?.close().catch(() => {});
  t = undefined;
});

// Regression: a request that arrived on a keep-alive connection while the server was shutting
// down (every deploy, for a backend with pooled connections) got Fastify's own 503 body, with
// neither the face's shape nor Retry-After. It is served as usual, and told the connection closes.
describe("a request that arrives while the server shuts down", () => {
  it("is answered as usual, with Connection: close, and the shutdown then ends", async () => {
    t = await createTestServer({ drainMs: 5_000 });
    await t.fastify.listen({ host: "127.0.0.1", port: 0 });
    const { port } = t.fastify.server.address() as { port: number };

    const socket = connect(port, "127.0.0.1");
    let answer = "";
    socket.on("data", (chunk) => {
      answer += String(chunk);
    });
    const ended = new Promise<void>((resolve) => socket.on("close", () => resolve()));
    const request = (path: string, body: string) =>
      `POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
    const first = request(
      "/v1/verifications",
      '{"channel":"email","to":"first@example.com","purpose":"sign_in"}',
    );
    // The first request's headers arrive before the shutdown, its body after: the connection is
    // busy, so the shutdown waits for it rather than closing it.
    const split = first.indexOf("\r\n\r\n") + 4;
    socket.write(first.slice(0, split));
    await new Promise((resolve) => setTimeout(resolve, 100));
    const closing = t.close();
    t = undefined;
    await new Promise((resolve) => setTimeout(resolve, 100));
    socket.write(first.slice(split));
    socket.write(request("/auth/v1/verification", '{"email":"second@example.com"}'));
    await ended;
    await closing;

    const responses = answer.split(/(?=HTTP\/1\.1 )/);
    expect(responses).toHaveLength(2);
    expect(responses[0]).toMatch(/^HTTP\/1\.1 201 /);
    // the second, on CloudBase's face: its own answer, not Fastify's `{"error":"Service Unavailable"…}`
    expect(responses[1]).toMatch(/^HTTP\/1\.1 200 /);
    expect(responses[1]).toMatch(/\r\nconnection: close\r\n/i);
    expect(responses[1]).toContain('"verification_id"');
    expect(answer).not.toContain("Service Unavailable");
  });
});
