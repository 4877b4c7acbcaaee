import { describe, expect, it } from "vitest";
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
});
