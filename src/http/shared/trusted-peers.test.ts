import { describe, expect, it } from "vitest";
import { parseTrustProxyEntry } from "../../config/trust-proxy.js";
import { trustedPeers } from "./trusted-peers.js";

describe("trustedPeers", () => {
  it("matches addresses, CIDRs, named ranges and IPv4-mapped forms, the same when asked again", () => {
    const peers = trustedPeers(["10.0.0.1", "192.168.0.0/16", "loopback", "2001:db8::/32", "not an address"]);
    for (let round = 0; round < 2; round += 1) {
      expect(peers.has("10.0.0.1")).toBe(true);
      expect(peers.has("::ffff:10.0.0.1")).toBe(true);
      expect(peers.has("10.0.0.2")).toBe(false);
      expect(peers.has("192.168.77.3")).toBe(true);
      expect(peers.has("127.0.0.1")).toBe(true);
      expect(peers.has("::1")).toBe(true);
      expect(peers.has("2001:db8:5::1")).toBe(true);
      expect(peers.has("2001:db9::1")).toBe(false);
      expect(peers.has("not an address")).toBe(false);
    }
  });

  it("trusts nobody when the list is empty, and stays bounded under a flood of addresses", () => {
    expect(trustedPeers([]).has("127.0.0.1")).toBe(false);
    const peers = trustedPeers(["203.0.113.0/24"]);
    for (let i = 0; i < 20_000; i += 1) peers.has(`198.51.${(i >> 8) & 255}.${i & 255}`);
    expect(peers.has("203.0.113.9")).toBe(true);
    expect(peers.has("198.51.0.1")).toBe(false);
  });

  // Regression: Number("") is 0, so a trailing slash read "10.0.0.0/" as 0.0.0.0/0 and believed
  // every peer's X-Forwarded-For.
  it("trusts nobody for an entry with a trailing slash", () => {
    const peers = trustedPeers(["10.0.0.0/"]);
    expect(peers.has("8.8.8.8")).toBe(false);
    expect(peers.has("10.0.0.5")).toBe(false);
  });
});

describe("parseTrustProxyEntry", () => {
  it("reads addresses, CIDRs and range names, around spaces", () => {
    expect(parseTrustProxyEntry(" 10.0.0.1 ")).toEqual([{ address: "10.0.0.1", prefix: 32, type: "ipv4" }]);
    expect(parseTrustProxyEntry("10.0.0.0/8")).toEqual([{ address: "10.0.0.0", prefix: 8, type: "ipv4" }]);
    expect(parseTrustProxyEntry("2001:db8::/32")).toEqual([
      { address: "2001:db8::", prefix: 32, type: "ipv6" },
    ]);
    expect(parseTrustProxyEntry("::1")).toEqual([{ address: "::1", prefix: 128, type: "ipv6" }]);
    expect(parseTrustProxyEntry("loopback")).toEqual([
      { address: "127.0.0.0", prefix: 8, type: "ipv4" },
      { address: "::1", prefix: 128, type: "ipv6" },
    ]);
  });

  it.each([
    "10.0.0.0/33",
    "2001:db8::/129",
    "1.2.3.4/abc",
    "1.2.3.4/",
    "1.2.3.4/-1",
    "1.2.3.4/0x10",
    "10.0.0.0/8/8",
    "notanip",
    "10.0.0.256",
    "",
    "constructor",
    "Loopback",
  ])("refuses %j", (entry) => {
    expect(parseTrustProxyEntry(entry)).toBeUndefined();
  });
});
