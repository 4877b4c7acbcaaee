import { BlockList, isIP } from "node:net";

export interface TrustedPeers {
  has(address: string): boolean;
}

// The names proxy-addr (Fastify's own trustProxy parser) accepts besides addresses and CIDRs.
const NAMED_RANGES: Record<string, string[]> = {
  loopback: ["127.0.0.0/8", "::1/128"],
  linklocal: ["169.254.0.0/16", "fe80::/10"],
  uniquelocal: ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"],
};
// Answers are remembered per address: a BlockList check costs about a microsecond, paid on every
// request that reads its client address. The addresses asked about are mostly the few proxies';
// a flood of others only refills the bounded memo.
const MEMO_MAX_ENTRIES = 4_096;

/**
 * The VERIFYD_TRUST_PROXY list (addresses, CIDRs, proxy-addr's range names) as a matcher; IPv4
 * entries also match their IPv4-mapped IPv6 form. Entries it cannot read match nothing.
 */
export function trustedPeers(entries: readonly string[]): TrustedPeers {
  const list = new BlockList();
  let empty = true;
  for (const entry of entries.flatMap((value) => NAMED_RANGES[value.trim()] ?? [value.trim()])) {
    const [address = "", prefixText] = entry.split("/");
    const family = isIP(address);
    if (family === 0) continue;
    const type = family === 4 ? "ipv4" : "ipv6";
    const prefix = prefixText === undefined ? (family === 4 ? 32 : 128) : Number(prefixText);
    if (!Number.isInteger(prefix) || prefix < 0 || prefix > (family === 4 ? 32 : 128)) continue;
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
