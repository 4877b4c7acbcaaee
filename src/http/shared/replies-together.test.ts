import { connect } from "node:net";
import Fastify, { type FastifyInstance, type FastifyReply } from "fastify";
import { afterEach, describe, expect, it } from "vitest";
import { writeRepliesTogether } from "./replies-together.js";

let server: FastifyInstance | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

let writeHeldNow = () => {};

async function serve(routes: (fastify: FastifyInstance) => void): Promise<number> {
  server = Fastify();
  writeHeldNow = writeRepliesTogether(server);
  routes(server);
  await server.listen({ host: "127.0.0.1", port: 0 });
  const address = server.server.address();
  if (address === null || typeof address === "string") throw new Error("no port");
  return address.port;
}

/** Sends `requests` in one TCP write and reads until `until` holds. */
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

  it("writes the replies made in one turn together, after the last of them", async () => {
    let release = () => {};
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const made: FastifyReply[] = [];
    let firstWrittenWhenSecondMade: boolean | undefined;
    const port = await serve((fastify) =>
      fastify.get("/:n", async (request, reply) => {
        made.push(reply);
        if (made.length === 2) release();
        // Both handlers go on in the same turn, once the second request has arrived.
        await gate;
        reply.send(`reply ${(request.params as { n: string }).n}`);
        if (reply === made[1]) firstWrittenWhenSecondMade = made[0]?.raw.writableEnded;
        return reply;
      }),
    );
    const answers = await Promise.all([1, 2].map((n) => fetch(`http://127.0.0.1:${port}/${n}`)));
    expect(await Promise.all(answers.map((answer) => answer.text()))).toEqual(["reply 1", "reply 2"]);
    expect(firstWrittenWhenSecondMade).toBe(false);
  });

  it("writes what it holds at once when the function it returns is called", async () => {
    const written: boolean[] = [];
    const port = await serve((fastify) =>
      fastify.get("/", (_request, reply) => {
        reply.send("made");
        written.push(reply.raw.writableEnded);
        writeHeldNow();
        written.push(reply.raw.writableEnded);
        return reply;
      }),
    );
    const response = await fetch(`http://127.0.0.1:${port}/`);
    expect(await response.text()).toBe("made");
    expect(written).toEqual([false, true]);
    // the turn's end then finds nothing left to write, and the next reply is held again
    expect(await (await fetch(`http://127.0.0.1:${port}/`)).text()).toBe("made");
    expect(written).toEqual([false, true, false, true]);
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

  it("goes on serving when a held reply's client has gone before it was written", async () => {
    const port = await serve((fastify) => {
      fastify.get("/gone", (request, reply) => {
        request.raw.socket.destroy();
        return reply.send("too late");
      });
      fastify.get("/ok", () => "ok");
    });
    await expect(fetch(`http://127.0.0.1:${port}/gone`)).rejects.toThrow();
    expect(await (await fetch(`http://127.0.0.1:${port}/ok`)).text()).toBe("ok");
  });
});
