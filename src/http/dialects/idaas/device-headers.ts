import { BlockList, isIP } from "node:net";
import type { FastifyRequest } from "fastify";
import type { IdaasLang } from "./error-map.js";

// Longer than any real user agent or fingerprint; a longer value is junk, not device information.
const MAX_DEVICE_HEADER_CHARS = 512;

/** What the IDaaS device headers say about the caller, once they are complete. */
export interface DeviceInfo {
  /** X-device-fingerprint: the device the abuse rules count */
  fingerprint: string;
  /** X-device-ip when a trusted peer states it, otherwise the request's address */
  clientIp: string;
}

/** A header's trimmed value; undefined when absent, repeated or blank. */
export function headerText(request: FastifyRequest, name: string): string | undefined {
  const value = request.headers[name];
  if (typeof value !== "string") return undefined;
  const trimmed = value.trim();
  return trimmed.length > 0 ? trimmed : undefined;
}

/**
 * Reads `X-operating-sys-version`, `X-device-fingerprint` and `X-agent` (all required) and
 * `X-device-ip`; null when the required ones are incomplete. `X-device-ip` is a claim the device
 * itself could make, so it is believed only from a peer named by VERIFYD_TRUST_PROXY (a gateway or
 * backend speaking for the device); from anyone else the client address is `request.ip` (the
 * socket's, or X-Forwarded-For's when a trusted proxy sent it).
 */
export function readDeviceHeaders(request: FastifyRequest, trusted: TrustedPeers): DeviceInfo | null {
  const required = ["x-operating-sys-version", "x-device-fingerprint", "x-agent"].map((name) =>
    headerText(request, name),
  );
  if (required.some((value) => value === undefined || value.length > MAX_DEVICE_HEADER_CHARS)) return null;
  const stated = headerText(request, "x-device-ip");
  const peer = request.socket.remoteAddress;
  const believed = stated !== undefined && isIP(stated) !== 0 && peer !== undefined && trusted.has(peer);
  return { fingerprint: required[1] as string, clientIp: believed ? stated : request.ip };
}

/** `X-L`: Chinese for any `zh…` value, English otherwise (and when absent). */
export function languageOf(request: FastifyRequest): IdaasLang {
  return headerText(request, "x-l")?.toLowerCase().startsWith("zh") ? "zh" : "en";
}

export interface TrustedPeers {
  has(address: string): boolean;
}

// The names proxy-addr (Fastify's trustProxy) accepts besides addresses and CIDRs.
const NAMED_RANGES: Record<string, string[]> = {
  loopback: ["127.0.0.0/8", "::1/128"],
  linklocal: ["169.254.0.0/16", "fe80::/10"],
  uniquelocal: ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"],
};

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
  return {
    has(address) {
      if (empty) return false;
      const family = isIP(address);
      return family !== 0 && list.check(address, family === 4 ? "ipv4" : "ipv6");
    },
  };
}
