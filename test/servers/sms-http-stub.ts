import { createServer, type IncomingHttpHeaders } from "node:http";
import type { AddressInfo } from "node:net";

/** One request as it arrived on the wire. */
export interface RecordedRequest {
  method: string;
  /** path and query, e.g. `/2010-04-01/Accounts/AC1/Messages.json` */
  path: string;
  headers: IncomingHttpHeaders;
  /** the raw body, exactly as received (signatures are computed over these bytes) */
  body: string;
}

export type StubReply =
  | {
      status?: number;
      /** serialised as the JSON body */
      json?: unknown;
      /** a raw body, for malformed answers */
      body?: string;
      headers?: Record<string, string>;
      /** hold the answer this long, to trip client timeouts */
      delayMs?: number;
    }
  /** drop the connection without answering */
  | { destroy: true };

export type StubResponder = (request: RecordedRequest) => StubReply | Promise<StubReply>;

export interface SmsHttpStub {
  /** `http://127.0.0.1:<port>`, no trailing slash */
  readonly url: string;
  readonly requests: RecordedRequest[];
  /** Scripts the answers to the next requests, in order; afterwards the fallback answers. */
  enqueue(...replies: Array<StubReply | StubResponder>): void;
  setFallback(reply: StubReply | StubResponder): void;
  close(): Promise<void>;
}

/**
 * A loopback HTTP server standing in for an SMS vendor's API, like Go's `httptest.NewServer`: it
 * records every request and answers with a scripted reply, a delay or a dropped connection.
 */
export async function startSmsHttpStub(
  fallback: StubReply | StubResponder = { status: 200, json: {} },
): Promise<SmsHttpStub> {
  const requests: RecordedRequest[] = [];
  const queue: Array<StubReply | StubResponder> = [];
  const timers = new Set<NodeJS.Timeout>();
  let fallbackReply = fallback;

  const server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on("data", (chunk: Buffer) => chunks.push(chunk));
    request.on("end", () => {
      const recorded: RecordedRequest = {
        method: request.method ?? "",
        path: request.url ?? "",
        headers: request.headers,
        body: Buffer.concat(chunks).toString("utf8"),
      };
      requests.push(recorded);
      const scripted = queue.shift() ?? fallbackReply;
      // A responder that throws is a broken test; answer 599 at once rather than leave the client hanging.
      const replying = Promise.resolve()
        .then(() => (typeof scripted === "function" ? scripted(recorded) : scripted))
        .catch(
          (error: unknown): StubReply => ({ status: 599, body: `stub responder failed: ${String(error)}` }),
        );
      void replying.then((reply) => {
        if ("destroy" in reply) {
          request.socket.destroy();
          return;
        }
        const answer = () => {
          const body = reply.body ?? (reply.json === undefined ? "" : JSON.stringify(reply.json));
          response.writeHead(reply.status ?? 200, {
            "content-type": "application/json",
            ...reply.headers,
          });
          response.end(body);
        };
        if (reply.delayMs === undefined) {
          answer();
          return;
        }
        const timer = setTimeout(() => {
          timers.delete(timer);
          answer();
        }, reply.delayMs);
        timers.add(timer);
      });
    });
  });

  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    enqueue: (...replies) => {
      queue.push(...replies);
    },
    setFallback: (reply) => {
      fallbackReply = reply;
    },
    close: async () => {
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // Delayed answers keep sockets open; a test's cleanup must not wait for them.
      server.closeAllConnections();
      await closed;
    },
  };
}
