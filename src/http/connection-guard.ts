import type { Server } from "node:http";
import type { Socket } from "node:net";
import type { FastifyBaseLogger } from "fastify";
import { clientAddressOf } from "../core/abuse/abuse-rules.js";
import type { Clock } from "../core/ports.js";
import { createLogThrottle } from "../observability/log-throttle.js";
import type { TrustedPeers } from "./shared/trusted-peers.js";

// Sockets one client (an IPv4 address, an IPv6 /64) may hold open at once. A browser opens at most
// six to an origin and a backend's pool a few dozen; without a bound, one host that opened as many
// sockets as the process has file descriptors (and kept them idle for the keep-alive timeout)
// left every other client refused. Room for many people behind one carrier-grade NAT address.
export const MAX_CONNECTIONS_PER_CLIENT = 128;
const REFUSAL_LOG_INTERVAL_MS = 60_000;

export interface ConnectionGuardOptions {
  /** proxies (VERIFYD_TRUST_PROXY) speak for many clients: their sockets are not counted */
  proxies: TrustedPeers;
  log: FastifyBaseLogger;
  clock: Clock;
  maxPerClient?: number;
}

/**
 * Closes a new connection at once when its client already holds `maxPerClient` open, counting
 * per client as the per-IP rate rules do. Costs a map update per connection, nothing per request.
 * Refusals are logged at most once a minute, with how many there were. Returns `close`, which
 * writes what is untold.
 */
export function guardConnections(server: Server, options: ConnectionGuardOptions): { close(): void } {
  const maxPerClient = options.maxPerClient ?? MAX_CONNECTIONS_PER_CLIENT;
  const open = new Map<string, number>();
  const refusals = createLogThrottle<FastifyBaseLogger, string>({
    clock: options.clock,
    intervalMs: REFUSAL_LOG_INTERVAL_MS,
    maxKeys: 1,
    laterLog: options.log,
    tell: ({ log, count, detail }) =>
      log.warn(
        { refused: count, lastClient: detail, maxPerClient },
        "refused connections of clients holding too many open: one host may be flooding the server",
      ),
  });
  const release = (client: string) => {
    const left = (open.get(client) ?? 1) - 1;
    if (left > 0) open.set(client, left);
    else open.delete(client);
  };
  server.on("connection", (socket: Socket) => {
    const address = socket.remoteAddress;
    if (address === undefined || options.proxies.has(address)) return;
    const client = clientAddressOf(address);
    const held = open.get(client) ?? 0;
    if (held >= maxPerClient) {
      socket.destroy();
      refusals.occurred(options.log, "refused", client);
      return;
    }
    open.set(client, held + 1);
    socket.once("close", () => release(client));
  });
  return { close: () => refusals.close() };
}
