import { createServer, type Server } from "node:http";
import { connect, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { createTestServer } from "../../test/harness.js";
import { guardConnections, MAX_CONNECTIONS_PER_CLIENT } from "./connection-guard.js";
import { trustedPeers } from "./shared/trusted-peers.js";

const lines: Array<Record<string, unknown>> = [];
const log = { warn: (fields: Record<string, unknown>) => lines.push(fields) } as never;
const clock = { nowMs: () => Date.now() };

let server: Server;
const sockets: Socket[] = [];
afterEach(async () => {
  for (const socket of sockets.splice(0)) socket.destroy();
  lines.length = 0;
  await new Promise((resolve) => server?.close(resolve));
});

async function listen(guard: Omit<Parameters<typeof guardConnections>[1], "log" | "clock">) {
  server = createServer((_, res) => res.end("ok"));
  const guarded = guardConnections(server, { ...guard, log, clock });
  server.on("close", () => guarded.close());
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return (server.address() as { port: number }).port;
}

/** Opens a socket, asks for one response on it, and says whether one came. */
function ask(port: number, path = "/"): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, "127.0.0.1");
    sockets.push(socket);
    socket.once("connect", () => socket.write(`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`));
    socket.once("data", (data) => resolve(data.toString().startsWith("HTTP/1.1 200")));
    socket.once("close", () => resolve(false));
    socket.once("error", () => resolve(false));
  });
}

describe("guardConnections", () => {
  // Regression: nothing bounded one client's sockets, so one host holding as many as the process had
  // file descriptors (idle keep-alives last 72 s) left every other client refused.
  it("closes a client's connection past its limit, and takes one again once one closed", async () => {
    const port = await listen({ proxies: trustedPeers([]), maxPerClient: 3 });
    expect(await Promise.all([ask(port), ask(port), ask(port)])).toEqual([true, true, true]);
    expect(await ask(port)).toBe(false);
    expect(lines).toEqual([
      expect.objectContaining({ refused: 1, lastClient: "127.0.0.1", maxPerClient: 3 }),
    ]);
    sockets[0]?.destroy();
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(await ask(port)).toBe(true);
  });

  it("counts no socket of a trusted proxy, which speaks for many clients", async () => {
    const port = await listen({ proxies: trustedPeers(["127.0.0.1"]), maxPerClient: 2 });
    expect(await Promise.all([ask(port), ask(port), ask(port), ask(port)])).toEqual([true, true, true, true]);
    expect(lines).toEqual([]);
  });

  it("guards the server's own listener", async () => {
    const t = await createTestServer();
    try {
      await t.fastify.listen({ host: "127.0.0.1", port: 0 });
      const { port } = t.fastify.server.address() as { port: number };
      const held = await Promise.all(
        Array.from({ length: MAX_CONNECTIONS_PER_CLIENT }, () => ask(port, "/healthz")),
      );
      expect(held.every(Boolean)).toBe(true);
      expect(await ask(port, "/healthz")).toBe(false);
    } finally {
      for (const socket of sockets.splice(0)) socket.destroy();
      await t.close();
    }
  });
});
