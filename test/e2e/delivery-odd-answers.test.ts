import { afterEach, describe, expect, it } from "vitest";
import { type ClusterTestServer, createTestServer, modesToTest, type TestServer } from "../harness.js";
import { type SmsHttpStub, startSmsHttpStub } from "../servers/sms-http-stub.js";

/**
 * What a provider puts in its answer (its message id, its error text) lands in the delivery
 * records, in the embedded mode and, when its backends are reachable, the cluster mode. A NUL
 * there once failed a whole PostgreSQL settle batch: every message of the round stayed queued and
 * was sent again at each lease expiry (@see issue 7).
 */

const MODES = await modesToTest("odd provider answers");

const API_KEY = "vk_odd_answers_key_0123456789";
const ROUND = 5;
const ODD_RECIPIENT = "+14155550104";

let t: TestServer | ClusterTestServer | undefined;
let stub: SmsHttpStub | undefined;
afterEach(async () => {
  await t?.close();
  await stub?.close();
  t = stub = undefined;
});

describe.each(MODES)("odd provider answers ($mode)", ({ cluster }) => {
  it("sends every message of a round once when one answer holds a NUL, and records its id without it", async () => {
    // The answers wait until the whole round has asked, so the round's outcomes settle together.
    let waiting: (() => void)[] = [];
    stub = await startSmsHttpStub(async (request) => {
      const { to } = JSON.parse(request.body) as { to: string };
      await new Promise<void>((resolve) => {
        waiting.push(resolve);
        if (waiting.length < ROUND) return;
        for (const release of waiting) release();
        waiting = [];
      });
      return to === ODD_RECIPIENT
        ? { status: 200, body: '{"id":"gw-\\u0000-odd"}', headers: { "content-type": "application/json" } }
        : { status: 200, json: { id: `gw-${to}` } };
    });
    const options = {
      devSender: true,
      apps: [
        {
          id: "default",
          apiKeys: [API_KEY],
          policy: { perIp: [] },
          abuse: { captcha: { native: "never" as const }, pumping: { safeList: ["+1"] } },
        },
      ],
      configFile: {
        providers: [{ id: "gateway", type: "webhook", url: `${stub.url}/sms`, secret: "whsec_0123456789" }],
      },
    };
    t = cluster ? await createTestServer({ ...options, cluster }) : await createTestServer(options);
    const server = t;
    const ids: string[] = [];
    for (let index = 0; index < ROUND; index++) {
      const sent = await server.fastify.inject({
        method: "POST",
        url: "/v1/verifications",
        headers: { authorization: `Bearer ${API_KEY}` },
        payload: { channel: "sms", to: `+1415555010${index}`, purpose: "sign_in" },
      });
      expect(sent.statusCode).toBe(201);
      ids.push(sent.json().id);
    }

    await server.deliverAll();
    // Leases lapse: whatever was left queued would be claimed and sent again now.
    server.clock.advanceSeconds(120);
    await server.deliverAll();

    expect(stub.requests).toHaveLength(ROUND);
    const records = await Promise.all(
      ids.map(async (id) => {
        const view = await server.fastify.inject({
          method: "GET",
          url: `/v1/verifications/${id}`,
          headers: { authorization: `Bearer ${API_KEY}` },
        });
        return view.json().deliveries as { status: string; provider_message_id?: string }[];
      }),
    );
    expect(records.map((list) => list.map((record) => record.status))).toEqual(ids.map(() => ["sent"]));
    expect(records[4]?.[0]?.provider_message_id).toBe("gw--odd");
  });
});
