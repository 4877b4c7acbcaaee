/**
 * The IPv6 site rule end to end through the native API (risk mode), on the embedded store: a bot
 * rotating /64s and /56s inside one /48 counts on one captcha threshold, and an IPv4 client gets
 * no such wider grouping.
 */
import type { LightMyRequestResponse } from "fastify";
import { afterEach, describe, expect, it } from "vitest";
import { createTestServer, type TestServer } from "../../../test/harness.js";
import type { AppConfig } from "../../config/schema.js";

let t: TestServer;
afterEach(async () => {
  await t?.close();
});

function open(risk: NonNullable<AppConfig["abuse"]>["risk"] = {}): Promise<TestServer> {
  return createTestServer({
    env: { VERIFYD_TRUST_PROXY: "127.0.0.1" },
    apps: [{ id: "default", abuse: { risk } }],
  });
}

let sent = 0;
function send(forwardedFor: string, payload?: Record<string, unknown>): Promise<LightMyRequestResponse> {
  sent += 1;
  return t.fastify.inject({
    method: "POST",
    url: "/v1/verifications",
    headers: { "x-forwarded-for": forwardedFor },
    payload: payload ?? { channel: "email", to: `bot${sent}@example.com`, purpose: "sign_in" },
  });
}

/** The `n`th client of a bot in the site 2001:db8:aa::/48: 4 /64s in each of its /56s. */
const inOneSite = (n: number) => `2001:db8:aa:${(Math.floor(n / 4) * 0x100 + (n % 4)).toString(16)}::1`;

describe("the IPv6 site (/48) risk rule", () => {
  it("asks a captcha of the 31st send from one /48, however its /56s and /64s rotate", async () => {
    t = await open();
    // 30 /56s x 4 /64s: each /64 once (per IP 3), each /56 4 times (per subnet 10)
    const answers: number[] = [];
    for (let n = 0; n < 120; n++) answers.push((await send(inOneSite(n))).statusCode);
    expect(answers.slice(0, 30)).toEqual(Array(30).fill(201));
    expect(new Set(answers.slice(30))).toEqual(new Set([428]));
    const refused = await send(inOneSite(120));
    expect(refused.json()).toMatchObject({ code: "CAPTCHA_REQUIRED" });
    const [entry] = await t.server.backend.sendLog.query({
      appId: "default",
      limit: 1,
      decision: "captcha_required",
    });
    expect(entry?.reason).toBe("risk_site:30/600s");
    // another site, and the same site once the window has passed, send again
    expect((await send("2001:db8:bb::1")).statusCode).toBe(201);
    t.clock.advanceSeconds(600);
    expect((await send(inOneSite(121))).statusCode).toBe(201);
  });

  it("answers a client of a site over its threshold before reading its request", async () => {
    t = await open({ perSite: { limit: 2, windowSeconds: 600 } });
    expect((await send("2001:db8:aa:100::1")).statusCode).toBe(201);
    expect((await send("2001:db8:aa:200::1")).statusCode).toBe(201);
    // a malformed send from a new /56 of the site: 428 from the pre-body check, not 400
    const malformed = { channel: "email", to: "not an address", purpose: "sign_in" };
    const early = await send("2001:db8:aa:300::1", malformed);
    expect(early.statusCode).toBe(428);
    expect(early.json()).toMatchObject({ code: "CAPTCHA_REQUIRED" });
    expect((await send("2001:db8:ab:300::1", malformed)).statusCode).toBe(400);
  });

  it("takes the app's own threshold", async () => {
    t = await open({ perSite: { limit: 2, windowSeconds: 60 } });
    expect((await send("2001:db8:aa:100::1")).statusCode).toBe(201);
    expect((await send("2001:db8:aa:200::1")).statusCode).toBe(201);
    expect((await send("2001:db8:aa:300::1")).statusCode).toBe(428);
    t.clock.advanceSeconds(60);
    expect((await send("2001:db8:aa:300::1")).statusCode).toBe(201);
  });

  it("groups no IPv4 clients wider than their /24, written either way", async () => {
    t = await open({ perSite: { limit: 2, windowSeconds: 600 } });
    // 40 /24s of one /16, each client once, half of them written IPv4-mapped
    for (let n = 0; n < 40; n++) {
      const ip = n % 2 ? `10.9.${n}.1` : `::ffff:10.9.${n}.1`;
      expect((await send(ip)).statusCode).toBe(201);
    }
  });
});
