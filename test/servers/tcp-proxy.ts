import type { AddressInfo } from "node:net";
import { connect, createServer, type Socket } from "node:net";

/** A loopback TCP proxy a test can cut and restore, to take a backend away without touching it. */
export interface TcpProxy {
  port: number;
  /** Drops every open connection and refuses new ones until `restore`. */
  cut(): void;
  restore(): void;
  /**
   * The open connections go silent for good, both ways, without a reset or a close: a peer that
   * died, or a middlebox that keeps acknowledging. New connections work.
   */
  freeze(): void;
  /**
   * The next chunk a client sends that contains `marker` reaches the backend, but its reply never
   * comes back: the connection is dropped when the backend answers, so the command surely ran.
   */
  loseReplyTo(marker: string): void;
  /** Holds every later chunk from the backend this long (0: none), in order. */
  delayReplies(ms: number): void;
  /** Counts, from now on, how often clients send `marker` (a command's text); the function reads it. */
  count(marker: string): () => number;
  close(): Promise<void>;
}

interface Link {
  client: Socket;
  upstream: Socket;
  frozen: boolean;
  // the command whose reply is to be lost went up this link
  losing: boolean;
}

/**
 * Listens on a free loopback port and pipes each connection to `target`. While cut, live
 * connections are destroyed (clients see a reset, as when a backend dies) and new ones are closed
 * as soon as they are accepted, so clients fail fast instead of hanging.
 */
export async function startTcpProxy(target: { host: string; port: number }): Promise<TcpProxy> {
  const links = new Set<Link>();
  let cut = false;
  let loseMarker: Buffer | null = null;
  let replyDelayMs = 0;
  const counted: Array<{ marker: Buffer; seen: number }> = [];
  // When the last delayed chunk is due: a later one never overtakes it, even once the delay drops.
  let lastDueMs = 0;
  const server = createServer((client) => {
    if (cut) {
      client.destroy();
      return;
    }
    const upstream = connect(target.port, target.host);
    const link: Link = { client, upstream, frozen: false, losing: false };
    links.add(link);
    const drop = () => {
      client.destroy();
      upstream.destroy();
      links.delete(link);
    };
    client.on("error", drop).on("close", drop);
    upstream.on("error", drop).on("close", drop);
    client.on("data", (chunk: Buffer) => {
      if (link.frozen) return;
      for (const each of counted) {
        for (let at = chunk.indexOf(each.marker); at !== -1; at = chunk.indexOf(each.marker, at + 1))
          each.seen += 1;
      }
      if (loseMarker && chunk.includes(loseMarker)) {
        loseMarker = null;
        link.losing = true;
      }
      upstream.write(chunk);
    });
    upstream.on("data", (chunk: Buffer) => {
      if (link.frozen) return;
      if (link.losing) return drop();
      const dueMs = Math.max(Date.now() + replyDelayMs, lastDueMs);
      if (dueMs <= Date.now()) {
        client.write(chunk);
        return;
      }
      lastDueMs = dueMs;
      setTimeout(() => {
        if (!link.frozen) client.write(chunk);
      }, dueMs - Date.now());
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const dropAll = () => {
    for (const link of links) {
      link.client.destroy();
      link.upstream.destroy();
    }
    links.clear();
  };
  return {
    port: (server.address() as AddressInfo).port,
    cut() {
      cut = true;
      dropAll();
    },
    restore() {
      cut = false;
    },
    freeze() {
      for (const link of links) link.frozen = true;
    },
    loseReplyTo(marker) {
      loseMarker = Buffer.from(marker);
    },
    delayReplies(ms) {
      replyDelayMs = ms;
    },
    count(marker) {
      const each = { marker: Buffer.from(marker), seen: 0 };
      counted.push(each);
      return () => each.seen;
    },
    close() {
      cut = true;
      dropAll();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
