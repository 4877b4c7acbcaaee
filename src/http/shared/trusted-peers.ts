import { BlockList, isIP } from "node:net";
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
      const family = isIP(address);
      const trusted = family !== 0 && list.check(address, family === 4 ? "ipv4" : "ipv6");
      if (memo.size >= MEMO_MAX_ENTRIES) memo.clear();
      memo.set(address, trusted);
      return trusted;
    },
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
