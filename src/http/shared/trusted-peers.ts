import { BlockList, isIP } from "node:net";
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
