import { BlockList, isIP, isIPv4, isIPv6 } from "node:net";
import type { FastifyRequest } from "fastify";
import { parseTrustProxyEntry } from "../../config/trust-proxy.js";

export interface TrustedPeers {
  has(address: string): boolean;
}

// Answers are remembered per address: a BlockList check costs about a microsecond, paid on every
// request that reads its client address. The addresses asked about are mostly the few proxies';
// a flood of others only refills the bounded memo.
const MEMO_MAX_ENTRIES = 4_096;

/**
 * The VERIFYD_TRUST_PROXY list (addresses, CIDRs, proxy-addr's range names) as a matcher; IPv4
 * entries also match their IPv4-mapped IPv6 form. Entries it cannot read match nothing (config
 * loading has already refused them; see `parseTrustProxyEntry`).
 */
export function trustedPeers(entries: readonly string[]): TrustedPeers {
  const list = new BlockList();
  let empty = true;
  for (const { address, prefix, type } of entries.flatMap((entry) => parseTrustProxyEntry(entry) ?? [])) {
    list.addSubnet(address, prefix, type);
    empty = false;
  }
  const memo = new Map<string, boolean>();
  return {
    has(address) {
      if (empty) return false;
      const known = memo.get(address);
      if (known !== undefined) return known;
      // X-Forwarded-For's hops are asked about too, as the proxy that relayed them wrote them.
      const bare = forwardedAddressOf(address);
      const family = bare === undefined ? 0 : isIP(bare);
      const trusted = family !== 0 && list.check(bare as string, family === 4 ? "ipv4" : "ipv6");
      if (memo.size >= MEMO_MAX_ENTRIES) memo.clear();
      memo.set(address, trusted);
      return trusted;
    },
  };
}

// How some proxies write the clients they relay in X-Forwarded-For: with the port they came from
// (`203.0.113.7:50123`, `[2001:db8::7]:50123`; Azure Application Gateway v2 does). Read as written,
// each connection would be a client of its own to every per-IP rule, and of no subnet at all.
const IPV4_WITH_PORT = /^(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}):\d{1,5}$/;
const BRACKETED_IPV6 = /^\[([^\]]*)\](?::\d{1,5})?$/;

/**
 * The IP address an X-Forwarded-For entry names, without the port some proxies add to it; undefined
 * for one that names no IP address (`unknown`, RFC 7239's obfuscated names, garbage).
 */
export function forwardedAddressOf(entry: string): string | undefined {
  if (isIP(entry) !== 0) return entry;
  const ipv4 = IPV4_WITH_PORT.exec(entry)?.[1];
  if (ipv4 !== undefined) return isIPv4(ipv4) ? ipv4 : undefined;
  const ipv6 = BRACKETED_IPV6.exec(entry)?.[1];
  return ipv6 !== undefined && isIPv6(ipv6) ? ipv6 : undefined;
}

/**
 * The client a request's hops name (`request.ips`: the socket's address, then X-Forwarded-For's
 * from the right up to the first one not a trusted proxy): the last, without a port; or, when that
 * names no IP address, the trusted proxy that relayed it (`unreadable` then holds what it wrote).
 * Undefined when there is no address at all (a socket already gone).
 */
export function forwardedClientOf(
  hops: readonly (string | undefined)[],
): { address: string; unreadable?: string } | undefined {
  const last = hops.at(-1);
  if (last === undefined) return undefined;
  const address = forwardedAddressOf(last);
  if (address !== undefined) return { address };
  // The relay is a trusted hop, so an address (`TrustedPeers.has` trusts only addresses). All the
  // requests it relays so share its budget: that fails closed, where each unreadable value would
  // otherwise be a client of its own.
  const relay = hops.length >= 2 ? hops.at(-2) : undefined;
  const relayAddress = relay === undefined ? undefined : forwardedAddressOf(relay);
  return relayAddress === undefined ? undefined : { address: relayAddress, unreadable: last };
}

/**
 * Makes `request.ip`, which every face counts its clients by (directly, or through
 * `clientAddressSpokenFor`), the address `forwardedClientOf` reads from a request's hops, where
 * Fastify's (proxy-addr's) is X-Forwarded-For's entry exactly as written. For a server with
 * VERIFYD_TRUST_PROXY set, run first on every request (by the CORS hook: a hook of its own cost
 * ~2 µs a request); a request without X-Forwarded-For costs a header look-up. The first
 * unreadable client is logged, and only the first: a client can send any value through a proxy
 * that passes the header on, and a line per request would let it write the disk full.
 */
export function forwardedClientReader(): (request: FastifyRequest) => void {
  let toldUnreadable = false;
  return (request) => {
    if (request.headers["x-forwarded-for"] === undefined) return;
    const hops = request.ips ?? [];
    const client = forwardedClientOf(hops);
    // Fastify's getter gives the last hop as written; only where that is not the client (a port
    // stripped, an unreadable client replaced by its relay) is `ip` defined over it. Defining it
    // on every forwarded request cost ~0.4 µs more than the getter's walks of the header for the
    // few reads a request makes (tens of ns each, the trust matcher remembering its answers).
    if (client === undefined || client.address === hops.at(-1)) return;
    Object.defineProperty(request, "ip", { value: client.address, enumerable: true });
    if (client.unreadable !== undefined && !toldUnreadable) {
      toldUnreadable = true;
      request.log.warn(
        { forwardedFor: client.unreadable.slice(0, 100), countedAs: client.address },
        "a trusted proxy's X-Forwarded-For named a client that is no IP address: such requests are counted under the proxy's address (logged once)",
      );
    }
  };
}

/**
 * The client address a request stands for: the one `stated` reads (an address the caller names for
 * the device it speaks for: IDaaS's `X-device-ip`, Fresns's device info) when a peer named by
 * VERIFYD_TRUST_PROXY sent it with no `X-Forwarded-For` at all — a gateway or backend speaking for
 * the device — and otherwise `request.ip`. `stated` is called only then: from anyone else the
 * statement is not even read. A trusted peer that sends `X-Forwarded-For` is a proxy relaying the
 * client, and proxies pass the client's own headers through untouched, so there the client is the
 * one X-Forwarded-For names; an untrusted peer is its socket's address. A device could state any
 * address, so nothing else makes the statement believed.
 */
export function clientAddressSpokenFor(
  request: FastifyRequest,
  trusted: TrustedPeers,
  stated: () => string | undefined,
): string {
  const peer = request.socket.remoteAddress;
  if (request.headers["x-forwarded-for"] !== undefined || peer === undefined || !trusted.has(peer)) {
    return request.ip;
  }
  const address = stated();
  return address !== undefined && isIP(address) !== 0 ? address : request.ip;
}
