import { createServer, type IncomingMessage } from "node:http";
import type { AddressInfo } from "node:net";

/**
 * A loopback SMS gateway for the crash tests: it takes verifyd's webhook sends, keyed by their
 * `Idempotency-Key` (the outbox message id), and answers after `latencyMs`. It counts what it
 * received and what it acknowledged per message, so duplicates can be told apart: received twice
 * (verifyd died before it heard the answer) or acknowledged twice (verifyd died between the 2xx
 * and committing it).
 */
export interface WebhookReceiver {
  readonly url: string;
  latencyMs: number;
  /** message id -> requests received */
  readonly received: Map<string, number>;
  /** message id -> 2xx answers written */
  readonly acknowledged: Map<string, number>;
  /** request path -> requests received (which process sent it, when each has its own path) */
  readonly byPath: Map<string, number>;
  close(): Promise<void>;
}

export async function startWebhookReceiver(latencyMs: number): Promise<WebhookReceiver> {
  const received = new Map<string, number>();
  const acknowledged = new Map<string, number>();
  const byPath = new Map<string, number>();
  const timers = new Set<NodeJS.Timeout>();
  const bump = (map: Map<string, number>, key: string) => map.set(key, (map.get(key) ?? 0) + 1);

  const state = { latencyMs };

  const server = createServer((request: IncomingMessage, response) => {
    request.resume();
    request.on("end", () => {
      const key = String(request.headers["idempotency-key"] ?? "");
      bump(received, key);
      bump(byPath, request.url ?? "");
      const timer = setTimeout(() => {
        timers.delete(timer);
        // The sender died meanwhile: nothing was acknowledged.
        if (response.destroyed || request.socket.destroyed) return;
        response.writeHead(200, { "content-type": "application/json" });
        response.end(JSON.stringify({ id: key }));
        bump(acknowledged, key);
      }, state.latencyMs);
      timers.add(timer);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    get latencyMs() {
      return state.latencyMs;
    },
    set latencyMs(value: number) {
      state.latencyMs = value;
    },
    received,
    acknowledged,
    byPath,
    close: async () => {
      for (const timer of timers) clearTimeout(timer);
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
    },
  };
}
