import { afterEach, describe, expect, it } from "vitest";
import { createTestServer, type TestServer } from "../../../../test/harness.js";
import { type SmsHttpStub, startSmsHttpStub } from "../../../../test/servers/sms-http-stub.js";

// Regression: a webhook gateway answering 401 (verifyd's signature refused) was taken as the
// recipient refused, so every message failed at once, the backup behind it was never tried, and
// the gateway's breaker never opened. @see logs review 1

const SECRET = "whsec_refused_0123456789";
const API_KEY = "vk_webhook_refused_key_0123456789";

let server: TestServer | undefined;
const stubs: SmsHttpStub[] = [];
afterEach(async () => {
  await server?.close();
  server = undefined;
  for (const stub of stubs.splice(0)) await stub.close();
});

/** A server routing SMS to "gateway" then "backup", each a webhook on its own loopback stub. */
async function start(gatewayStatus: number) {
  const gateway = await startSmsHttpStub({ status: gatewayStatus, json: { error: "refused" } });
  const backup = await startSmsHttpStub({ status: 200, json: { id: "backup-ok" } });
  stubs.push(gateway, backup);
  const webhook = (id: string, target: SmsHttpStub) => ({
    id,
    type: "webhook",
    url: `${target.url}/sms`,
    secret: SECRET,
  });
  server = await createTestServer({
    devSender: true,
    apps: [
      {
        id: "default",
        apiKeys: [API_KEY],
        abuse: { captcha: { native: "never" }, pumping: { safeList: ["+1"] } },
      },
    ],
    configFile: {
      providers: [webhook("gateway", gateway), webhook("backup", backup)],
      routing: { sms: ["gateway", "backup"] },
      delivery: { triesPerProvider: 1, breaker: { failureThreshold: 2, coolDownSeconds: 30 } },
    },
  });
  return { server, gateway, backup };
}

async function send(target: TestServer, to: string): Promise<string> {
  const sent = await target.fastify.inject({
    method: "POST",
    url: "/v1/verifications",
    headers: { authorization: `Bearer ${API_KEY}` },
    payload: { channel: "sms", to, purpose: "sign_in" },
  });
  expect(sent.statusCode).toBe(201);
  return sent.json().id;
}

async function deliveries(target: TestServer, id: string) {
  const view = await target.fastify.inject({
    url: `/v1/verifications/${id}`,
    headers: { authorization: `Bearer ${API_KEY}` },
  });
  return view.json().deliveries.map((delivery: { provider: string; status: string; error?: string }) => ({
    provider: delivery.provider,
    status: delivery.status,
    ...(delivery.error ? { error: delivery.error } : {}),
  }));
}

const recipients = (stub: SmsHttpStub) => stub.requests.map((request) => JSON.parse(request.body).to);

describe("a webhook gateway refusing verifyd's request", () => {
  it.each([401, 403, 404])(
    "fails over on HTTP %i, and its breaker opens after repeated refusals",
    async (status) => {
      const { server, gateway, backup } = await start(status);

      const first = await send(server, "+14155550101");
      await server.deliverAll();
      expect(recipients(backup)).toEqual(["+14155550101"]);
      expect(await deliveries(server, first)).toEqual([
        { provider: "gateway", status: "failed", error: expect.stringContaining(`HTTP ${status} (`) },
        { provider: "backup", status: "sent" },
      ]);

      // the second refusal reaches the threshold: the third message skips the gateway
      await send(server, "+14155550102");
      await server.deliverAll();
      await send(server, "+14155550103");
      await server.deliverAll();
      expect(gateway.requests).toHaveLength(2);
      expect(recipients(backup)).toEqual(["+14155550101", "+14155550102", "+14155550103"]);
    },
  );

  it("still takes HTTP 400 as the recipient refused: no failover, and the breaker stays closed", async () => {
    const { server, gateway, backup } = await start(400);

    for (const to of ["+14155550111", "+14155550112", "+14155550113"]) {
      const id = await send(server, to);
      await server.deliverAll();
      expect(await deliveries(server, id)).toEqual([
        { provider: "gateway", status: "failed", error: "gateway: HTTP 400" },
      ]);
    }
    expect(gateway.requests).toHaveLength(3);
    expect(backup.requests).toHaveLength(0);
  });
});
