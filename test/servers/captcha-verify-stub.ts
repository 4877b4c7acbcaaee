import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

/** One request the stub received, as a siteverify vendor would see it. */
export interface CaptchaVerifyStubRequest {
  method: string;
  path: string;
  contentType: string | undefined;
  rawBody: string;
  /** the body parsed as `application/x-www-form-urlencoded` */
  form: Record<string, string>;
}

/** A scripted answer. Without `rawBody`, `json` is serialised (default `{ success: true }`). */
export interface CaptchaVerifyStubReply {
  status?: number;
  json?: unknown;
  /** sent verbatim as the body, for malformed answers */
  rawBody?: string;
  /** wait this long before answering; `close()` abandons a pending reply */
  delayMs?: number;
}

/** A loopback siteverify endpoint for verifier tests. */
export interface CaptchaVerifyStub {
  /** the URL to pass as `verifyUrl` */
  url: string;
  /** every request received, in order */
  requests: CaptchaVerifyStubRequest[];
  /** queues replies for the next requests; when the queue is empty the stub answers `{success: true}` */
  reply(...replies: CaptchaVerifyStubReply[]): void;
  close(): Promise<void>;
}

/**
 * Starts a siteverify stand-in on 127.0.0.1 at a free port (like kratos' `httptest.NewServer`):
 * it records each form body and answers the scripted replies in order.
 */
export async function startCaptchaVerifyStub(): Promise<CaptchaVerifyStub> {
  const requests: CaptchaVerifyStubRequest[] = [];
  const queue: CaptchaVerifyStubReply[] = [];
  const timers = new Set<NodeJS.Timeout>();

  const answer = (response: ServerResponse, reply: CaptchaVerifyStubReply): void => {
    const body = reply.rawBody ?? JSON.stringify(reply.json ?? { success: true });
    response.writeHead(reply.status ?? 200, { "content-type": "application/json" });
    response.end(body);
  };

  const server = createServer((request: IncomingMessage, response: ServerResponse) => {
    const chunks: Buffer[] = [];
    request.on("data", (chunk: Buffer) => chunks.push(chunk));
    request.on("end", () => {
      const rawBody = Buffer.concat(chunks).toString("utf8");
      requests.push({
        method: request.method ?? "",
        path: request.url ?? "",
        contentType: request.headers["content-type"],
        rawBody,
        form: Object.fromEntries(new URLSearchParams(rawBody)),
      });
      const reply = queue.shift() ?? {};
      if (reply.delayMs === undefined) {
        answer(response, reply);
        return;
      }
      const timer = setTimeout(() => {
        timers.delete(timer);
        answer(response, reply);
      }, reply.delayMs);
      timers.add(timer);
    });
  });

  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}/siteverify`,
    requests,
    reply(...replies) {
      queue.push(...replies);
    },
    async close() {
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      // Keep-alive sockets from fetch and abandoned delayed replies would otherwise hold close() open.
      server.closeAllConnections();
      await new Promise<void>((resolve, reject) =>
        server.close((error) => (error ? reject(error) : resolve())),
      );
    },
  };
}
