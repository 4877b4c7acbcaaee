import { describe, expect, it } from "vitest";
import { createTestServer } from "../../test/harness.js";
import { DEFAULT_POLICY, resolveAbusePolicy, resolvePolicy } from "./policy.js";

describe("resolvePolicy", () => {
  it("lays an app's overrides over the defaults", () => {
    expect(resolvePolicy({ codeLength: 8 })).toEqual({ ...DEFAULT_POLICY, codeLength: 8 });
    expect(resolvePolicy(undefined)).toEqual(DEFAULT_POLICY);
  });

  it("keeps the stricter of two rules of one scope and window", () => {
    const policy = resolvePolicy({
      perRecipient: [
        { limit: 4, windowSeconds: 600 },
        { limit: 1, windowSeconds: 60 },
        { limit: 2, windowSeconds: 600 },
      ],
      perIp: [
        { limit: 10, windowSeconds: 3600 },
        { limit: 10, windowSeconds: 3600 },
      ],
    });
    expect(policy.perRecipient).toEqual([
      { limit: 2, windowSeconds: 600 },
      { limit: 1, windowSeconds: 60 },
    ]);
    expect(policy.perIp).toEqual([{ limit: 10, windowSeconds: 3600 }]);
  });

  // Regression: the pumping rules' counters are keyed by window too, and were counted twice on
  // SQLite and once on Redis. @see .scratch/diff17 finding 9
  it("keeps the stricter of two pumping rules of one window, per country and per prefix", () => {
    const twice = [
      { limit: 4, windowSeconds: 600 },
      { limit: 2, windowSeconds: 600 },
    ];
    const { pumping } = resolveAbusePolicy({ pumping: { perCountry: twice, perPrefix: twice } });
    expect(pumping.perCountry).toEqual([{ limit: 2, windowSeconds: 600 }]);
    expect(pumping.perPrefix).toEqual([{ limit: 2, windowSeconds: 600 }]);
  });

  // Regression: the two rules shared one counter, which SQLite counted twice a send (one send in
  // 10 minutes passed) and Redis once (two passed). @see .scratch/parity finding 3
  it("lets through what the stricter rule allows when two share a window", async () => {
    const t = await createTestServer({
      apps: [
        {
          id: "default",
          policy: {
            perIp: [],
            perRecipient: [
              { limit: 2, windowSeconds: 600 },
              { limit: 4, windowSeconds: 600 },
            ],
          },
        },
      ],
    });
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 3; i++) {
        const sent = await t.fastify.inject({
          method: "POST",
          url: "/v1/verifications",
          payload: { channel: "email", to: "twice@example.com", purpose: "sign_in" },
        });
        statuses.push(sent.statusCode);
        t.clock.advanceSeconds(10);
      }
      expect(statuses).toEqual([201, 201, 429]);
    } finally {
      await t.close();
    }
  });
});
