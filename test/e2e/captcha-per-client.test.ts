/**
 * The per-client captcha budgets over HTTP, in the embedded mode and, when its backends are
 * reachable, the cluster mode: both count through the same core rules and the CounterStore port,
 * so each case must answer alike on both. A trusted proxy (127.0.0.1, the inject peer) names the
 * client in X-Forwarded-For, as in a real deployment behind a load balancer.
 */
import type { LightMyRequestResponse as InjectResponse } from "fastify";
import { afterEach, describe, expect, it } from "vitest";
import { type ClusterTestServer, createTestServer, modesToTest, type TestServer } from "../harness.js";

const MODES = await modesToTest("captcha budgets per client");

const IDAAS_DEVICE: Record<string, string> = {
  "x-operating-sys-version": "windows10.1.1",
  "x-device-fingerprint": "156aysdna213sc50",
  "x-agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 13_3 like Mac OS X)",
  "x-client-id": "default",
};

let t: TestServer | ClusterTestServer | undefined;
afterEach(async () => {
  await t?.close();
  t = undefined;
});

describe.each(MODES)("captcha budgets per client ($mode)", ({ cluster }) => {
  async function open(): Promise<TestServer | ClusterTestServer> {
    const env = { VERIFYD_TRUST_PROXY: "127.0.0.1" };
    t = cluster ? await createTestServer({ env, cluster }) : await createTestServer({ env });
    return t;
  }

  function server(): TestServer | ClusterTestServer {
    if (!t) throw new Error("open() first");
    return t;
  }

  async function drawSlider(ip: string): Promise<InjectResponse> {
    return server().fastify.inject({
      method: "POST",
      url: "/v1/captcha",
      headers: { "x-forwarded-for": ip },
      payload: { type: "slider" },
    });
  }

  async function answer(ip: string, token: string, x: number): Promise<InjectResponse> {
    return server().fastify.inject({
      method: "POST",
      url: "/v1/captcha/verify",
      headers: { "x-forwarded-for": ip },
      payload: { token, answer: x },
    });
  }

  async function rightX(token: string): Promise<number> {
    const dev = await server().fastify.inject({ method: "GET", url: `/v1/dev/captcha/${token}` });
    return dev.json().answer.x as number;
  }

  /** An x at least 20 px from the gap: wrong whatever the tolerance. */
  const wrongX = (x: number) => (x > 150 ? x - 60 : x + 60);

  function expectRefusedClient(response: InjectResponse): void {
    expect(response.statusCode, response.body).toBe(429);
    expect(response.json()).toMatchObject({ code: "RATE_LIMITED" });
    expect(Number(response.headers["retry-after"])).toBeGreaterThan(0);
  }

  /** Answers wrong on fresh challenges, one each, until the IP's budget of 10 is spent. */
  async function spendWrongAnswers(ip: (n: number) => string): Promise<void> {
    for (let n = 0; n < 10; n++) {
      const { token } = (await drawSlider(ip(n))).json();
      expect((await answer(ip(n), token, wrongX(await rightX(token)))).statusCode).toBe(400);
    }
  }

  it("refuses every answer once an IP has 10 wrong ones, even on challenges it drew first", async () => {
    await open();
    const ip = "198.51.100.20";
    const tokens: string[] = [];
    for (let n = 0; n < 30; n++) {
      const drawn = await drawSlider(ip);
      expect(drawn.statusCode).toBe(200);
      tokens.push(drawn.json().token);
    }
    // The one try of each challenge drawn, as a blind guesser spends them.
    const statuses: number[] = [];
    for (const token of tokens.slice(0, 29)) {
      statuses.push((await answer(ip, token, wrongX(await rightX(token)))).statusCode);
    }
    expect(statuses.filter((status) => status === 400)).toHaveLength(10);
    expect(statuses.filter((status) => status === 429)).toHaveLength(19);
    // Not even the right answer to a challenge drawn in time is judged now.
    const last = tokens[29] as string;
    expectRefusedClient(await answer(ip, last, await rightX(last)));
  });

  it("counts every address of an IPv6 /64 as one client", async () => {
    await open();
    await spendWrongAnswers((n) => `2001:db8:aa:bb::${n + 1}`);
    expectRefusedClient(await drawSlider("2001:db8:aa:bb::ffff"));
    const neighbour = (await drawSlider("2001:db8:aa:cc::1")).json().token as string;
    expectRefusedClient(await answer("2001:db8:aa:bb:1:2:3:4", neighbour, await rightX(neighbour)));
    // The neighbouring /64 is another client: its right answer passes.
    expect((await answer("2001:db8:aa:cc::2", neighbour, await rightX(neighbour))).statusCode).toBe(200);

    for (let n = 0; n < 30; n++) expect((await drawSlider(`2001:db8:1:2::${n + 1}`)).statusCode).toBe(200);
    expectRefusedClient(await drawSlider("2001:db8:1:2:ffff::1"));
    expect((await drawSlider("2001:db8:1:3::1")).statusCode).toBe(200);
  });

  it("counts an IPv4 client by its own address", async () => {
    await open();
    await spendWrongAnswers(() => "198.51.100.7");
    expectRefusedClient(await drawSlider("198.51.100.7"));
    const { token } = (await drawSlider("198.51.100.8")).json();
    expect((await answer("198.51.100.8", token, await rightX(token))).statusCode).toBe(200);
  });

  it("refuses an answer over budget in each face's own shape", async () => {
    await open();
    const ip = "198.51.100.30";
    const native = (await drawSlider(ip)).json().token as string;
    const idaas = await server().fastify.inject({
      method: "GET",
      url: "/api/v2/sdk/captcha",
      headers: { ...IDAAS_DEVICE, "x-forwarded-for": ip },
    });
    const cloudbase = await server().fastify.inject({
      method: "POST",
      url: "/auth/v1/captcha/data",
      headers: { "x-forwarded-for": ip },
      payload: {},
    });
    await spendWrongAnswers(() => ip);

    expectRefusedClient(await answer(ip, native, await rightX(native)));
    const idaasToken = idaas.json().token as string;
    const idaasRefusal = await server().fastify.inject({
      method: "POST",
      url: "/api/v2/sdk/captcha/verify",
      headers: { ...IDAAS_DEVICE, "x-forwarded-for": ip },
      payload: {
        token: idaasToken,
        point_json: `{"x":${(await rightX(idaasToken)).toFixed(1)},"y":5.0}`,
        sender: "ann@example.com",
      },
    });
    expect(idaasRefusal.statusCode, idaasRefusal.body).toBe(400);
    expect(idaasRefusal.json().error_code).toBe("IDAAS.SDK.CAPTCHA.1005");
    const cloudbaseToken = cloudbase.json().token as string;
    const cloudbaseAnswer = await server().fastify.inject({
      method: "GET",
      url: `/v1/dev/captcha/${cloudbaseToken}`,
    });
    const cloudbaseRefusal = await server().fastify.inject({
      method: "POST",
      url: "/auth/v1/captcha/data/verify",
      headers: { "x-forwarded-for": ip },
      payload: { token: cloudbaseToken, key: cloudbaseAnswer.json().answer },
    });
    expect(cloudbaseRefusal.statusCode, cloudbaseRefusal.body).toBe(429);
    expect(cloudbaseRefusal.json()).toMatchObject({ error: "rate_limit_exceeded", error_code: 4029 });
  });
});
