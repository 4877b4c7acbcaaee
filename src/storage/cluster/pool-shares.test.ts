import { describe, expect, it } from "vitest";
import { poolShares } from "./index.js";

describe("poolShares", () => {
  it("gives requests three quarters and splits the rest between background work and delivery", () => {
    expect(poolShares(10)).toEqual({ request: 8, background: 1, delivery: 1 });
    expect(poolShares(40)).toEqual({ request: 30, background: 5, delivery: 5 });
    for (let size = 8; size <= 100; size++) {
      const { request, background, delivery } = poolShares(size);
      expect(request + background + delivery).toBe(size);
    }
  });

  it("keeps one connection for each even when the configured pool is smaller than three", () => {
    for (const size of [1, 2, 3]) {
      const shares = poolShares(size);
      expect(Math.min(shares.request, shares.background, shares.delivery)).toBe(1);
    }
  });
});
