import { connect } from "node:net";
import Fastify, { type FastifyInstance } from "fastify";
import { afterEach, describe, expect, it } from "vitest";
import { writeRepliesTogether } from "./replies-together.js";

let server: FastifyInstance | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

async function serve(routes: (fastify: FastifyInstance) => void): Promise<number> {
  server = Fastify();
  writeRepliesTogether(server);
  routes(server);
  await server.listen({ host: "127.0.0.1", port: 0 });
  const address = server.server.address();
  if (address === null || typeof address === "string") throw new Error("no port");
  return address.port;
}

/** Sends `requests` in one TCP write (so the server reads them in one turn) and reads until `until`. */
function pipelined(port: number, requests: string[], until: (received: string) => boolean): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1", () => socket.write(requests.join("")));
    let received = "";
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => {
      received += chunk;
      if (until(received)) {
        socket.destroy();
        resolve(received);
      }
    });
    socket.on("error", reject);
    socket.setTimeout(5_000, () => reject(new Error(`no full answer in 5 s; got: ${received}`)));
  });
}

const get = (path: string) => `GET ${path} HTTP/1.1\r\nHost: localhost\r\n\r\n`;

describe("writeRepliesTogether", () => {
  it("writes a reply when the turn that made it ends, not at once", async () => {
    const written: boolean[] = [];
    const port = await serve((fastify) =>
      fastify.get("/", (_request, reply) => {
        reply.send("made");
        written.push(reply.raw.writableEnded);
        setImmediate(() => written.push(reply.raw.writableEnded));
        return reply;
      }),
    );
    const response = await fetch(`http://127.0.0.1:${port}/`);
    expect(await response.text()).toBe("made");
    expect(written).toEqual([false, true]);
  });

  it("writes the replies of one turn in the order they were made", async () => {
    const port = await serve((fastify) => {
      fastify.get("/:n", (request) => `reply ${(request.params as { n: string }).n};`);
    });
    const received = await pipelined(port, [get("/1"), get("/2"), get("/3")], (text) =>
      text.includes("reply 3;"),
    );
    expect(received.match(/reply \d;/g)).toEqual(["reply 1;", "reply 2;", "reply 3;"]);
  });

  it("still writes the others when one held reply cannot be written", async () => {
    const port = await serve((fastify) => {
      // A handler that answers twice: its second reply fails when it is written.
      fastify.get("/twice", (_request, reply) => {
        reply.send("first;");
        reply.send("second;");
        return reply;
      });
      fastify.get("/ok", () => "ok;");
    });
    const received = await pipelined(port, [get("/twice"), get("/ok")], (text) => text.includes("ok;"));
    expect(received).toContain("first;");
    expect(received).toContain("ok;");
    expect(received).not.toContain("second;");
    expect((await fetch(`http://127.0.0.1:${port}/ok`)).status).toBe(200);
  });
});
