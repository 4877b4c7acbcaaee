import { isIP } from "node:net";

// The names proxy-addr (Fastify's own trustProxy parser) accepts besides addresses and CIDRs.
// A Map, not an object literal: an entry such as "constructor" must not find Object.prototype's.
const NAMED_RANGES = new Map<string, string[]>([
  ["loopback", ["127.0.0.0/8", "::1/128"]],
  ["linklocal", ["169.254.0.0/16", "fe80::/10"]],
  ["uniquelocal", ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"]],
]);

/** One subnet of a VERIFYD_TRUST_PROXY entry, as `BlockList.addSubnet` takes it. */
export interface TrustedSubnet {
  address: string;
  prefix: number;
  type: "ipv4" | "ipv6";
}

/**
 * The subnets one VERIFYD_TRUST_PROXY entry (an address, a CIDR or one of proxy-addr's range names)
 * stands for, or undefined when it is none of those. Config loading refuses such entries with this
 * same reading, so the matcher and the check cannot disagree about what is valid.
 */
export function parseTrustProxyEntry(entry: string): TrustedSubnet[] | undefined {
  const trimmed = entry.trim();
  const named = NAMED_RANGES.get(trimmed);
  if (named) return named.flatMap((range) => parseTrustProxyEntry(range) ?? []);
  const [address = "", prefixText, ...rest] = trimmed.split("/");
  const family = isIP(address);
  if (family === 0 || rest.length > 0) return undefined;
  const maxPrefix = family === 4 ? 32 : 128;
  // Digits only: Number() would read "" (a trailing slash) as /0, which trusts every address.
  if (prefixText !== undefined && !/^\d{1,3}$/.test(prefixText)) return undefined;
  const prefix = prefixText === undefined ? maxPrefix : Number(prefixText);
  if (prefix > maxPrefix) return undefined;
  return [{ address, prefix, type: family === 4 ? "ipv4" : "ipv6" }];
}
