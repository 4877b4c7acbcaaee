import twilio from "twilio";
import { afterEach, describe, expect, it } from "vitest";
import { signWebhookPayload } from "../../src/delivery/sms/webhook/webhook-signature.js";
import { createTestServer, type TestServer } from "../harness.js";
import { type FakeSmsc, startFakeSmsc } from "../servers/fake-smsc.js";
import { type SmsHttpStub, startSmsHttpStub } from "../servers/sms-http-stub.js";
import { deliveriesOf } from "./verification-view.js";

/**
 * Issue 7 delivery status: what a provider reports after accepting a message (Twilio's signed
 * status callback, the generic webhook's signed callback, an SMPP deliver_sm receipt) reaches
 * `GET /v1/verifications/{id}`. Unsigned or badly signed callbacks are refused with 401.
 */

const API_KEY = "vk_delivery_status_key_0123456789";
const ACCOUNT_SID = `AC${"a1".repeat(16)}`;
const AUTH_TOKEN = "twilio-auth-token-0123456789";
const CALLBACK_URL = "https://verifyd.example.com/v1/callbacks/twilio";
const WEBHOOK_SECRET = "whsec_status_0123456789";
const MESSAGE_SID = `SM${"d4".repeat(16)}`;

let t: TestServer | undefined;
let stub: SmsHttpStub | undefined;
let smsc: FakeSmsc | undefined;
afterEach(async () => {
  await t?.close();
  await stub?.close();
  await smsc?.close();
  t = stub = smsc = undefined;
});

async function start(providers: Record<string, unknown>[]): Promise<TestServer> {
  t = await createTestServer({
    devSender: true,
    apps: [
      {
        id: "default",
        apiKeys: [API_KEY],
        abuse: { captcha: { native: "never" }, pumping: { safeList: ["+1"] } },
      },
    ],
    configFile: { providers },
  });
  return t;
}

async function sendSms(server: TestServer, to = "+14155550100"): Promise<string> {
  const sent = await server.fastify.inject({
    method: "POST",
    url: "/v1/verifications",
    headers: { authorization: `Bearer ${API_KEY}` },
    payload: { channel: "sms", to, purpose: "sign_in" },
  });
  expect(sent.statusCode).toBe(201);
  return sent.json().id;
}

const deliveries = (server: TestServer, id: string) => deliveriesOf(server, id, API_KEY);

/** Polls the verification until its last delivery has `status` (receipts are applied asynchronously). */
async function eventuallyStatus(server: TestServer, id: string, status: string) {
  const deadline = Date.now() + 5_000;
  for (;;) {
    const list = await deliveries(server, id);
    if (list.at(-1)?.status === status) return list;
    if (Date.now() > deadline) throw new Error(`delivery never became ${status}: ${JSON.stringify(list)}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function twilioCallback(server: TestServer, params: Record<string, string>, signature?: string) {
  const body = new URLSearchParams(params).toString();
  return server.fastify.inject({
    method: "POST",
    url: "/v1/callbacks/twilio",
    headers: {
      "content-type": "application/x-www-form-urlencoded",
      ...(signature === undefined ? {} : { "x-twilio-signature": signature }),
    },
    payload: body,
  });
}

describe("Twilio status callbacks", () => {
  async function twilioSetup() {
    stub = await startSmsHttpStub({ status: 201, json: { sid: MESSAGE_SID, status: "queued" } });
    const server = await start([
      {
        id: "twilio",
        type: "twilio",
        accountSid: ACCOUNT_SID,
        authToken: AUTH_TOKEN,
        from: "+14155550199",
        statusCallbackUrl: CALLBACK_URL,
        baseUrl: stub.url,
      },
    ]);
    const id = await sendSms(server);
    await server.deliverAll();
    // the send asked Twilio to report status changes to our callback URL
    expect(new URLSearchParams(stub.requests[0]?.body).get("StatusCallback")).toBe(CALLBACK_URL);
    return { server, id };
  }

  const delivered = {
    AccountSid: ACCOUNT_SID,
    From: "+14155550199",
    To: "+14155550100",
    MessageSid: MESSAGE_SID,
    SmsSid: MESSAGE_SID,
    MessageStatus: "delivered",
    SmsStatus: "delivered",
    ApiVersion: "2010-04-01",
  };

  it("marks the delivery delivered on a callback signed as Twilio signs it", async () => {
    const { server, id } = await twilioSetup();
    expect(await deliveries(server, id)).toMatchObject([{ provider: "twilio", status: "sent" }]);
    // the official SDK computes the signature: a misread of Twilio's scheme cannot pass
    const signature = twilio.getExpectedTwilioSignature(AUTH_TOKEN, CALLBACK_URL, delivered);
    const answer = await twilioCallback(server, delivered, signature);
    expect(answer.statusCode).toBe(200);
    expect(await eventuallyStatus(server, id, "delivered")).toMatchObject([
      { provider: "twilio", status: "delivered" },
    ]);
  });

  it("records an undelivered message as failed with Twilio's error code", async () => {
    const { server, id } = await twilioSetup();
    const params = {
      ...delivered,
      MessageStatus: "undelivered",
      SmsStatus: "undelivered",
      ErrorCode: "30003",
    };
    const answer = await twilioCallback(
      server,
      params,
      twilio.getExpectedTwilioSignature(AUTH_TOKEN, CALLBACK_URL, params),
    );
    expect(answer.statusCode).toBe(200);
    expect(await eventuallyStatus(server, id, "failed")).toMatchObject([
      { provider: "twilio", status: "failed", error: "undelivered error 30003" },
    ]);
  });

  it.each([
    ["no signature", undefined],
    [
      "a signature by another token",
      twilio.getExpectedTwilioSignature("another-token", CALLBACK_URL, delivered),
    ],
    [
      "a signature over other parameters",
      twilio.getExpectedTwilioSignature(AUTH_TOKEN, CALLBACK_URL, { ...delivered, MessageStatus: "sent" }),
    ],
    [
      "a signature for another URL",
      twilio.getExpectedTwilioSignature(AUTH_TOKEN, "https://evil.example/cb", delivered),
    ],
  ])("refuses a callback with %s (401 problem+json) and changes nothing", async (_case, signature) => {
    const { server, id } = await twilioSetup();
    const answer = await twilioCallback(server, delivered, signature);
    expect(answer.statusCode).toBe(401);
    expect(answer.headers["content-type"]).toContain("application/problem+json");
    expect(answer.json()).toMatchObject({ status: 401, code: "SIGNATURE_INVALID" });
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(await deliveries(server, id)).toMatchObject([{ provider: "twilio", status: "sent" }]);
  });

  it("refuses callbacks for a provider that posts none", async () => {
    const { server } = await twilioSetup();
    const answer = await server.fastify.inject({
      method: "POST",
      url: "/v1/callbacks/unknown",
      headers: { "content-type": "application/json" },
      payload: "{}",
    });
    expect(answer.statusCode).toBe(401);
    expect(answer.json().code).toBe("SIGNATURE_INVALID");
  });
});

describe("webhook status callbacks", () => {
  async function webhookSetup() {
    // the gateway answers 204: no id of its own, so it reports by the verifyd message id it got
    stub = await startSmsHttpStub({ status: 204 });
    const server = await start([
      { id: "gateway", type: "webhook", url: `${stub.url}/sms`, secret: WEBHOOK_SECRET },
    ]);
    const id = await sendSms(server);
    await server.deliverAll();
    const messageId = String(stub.requests[0]?.headers["idempotency-key"]);
    return { server, id, messageId };
  }

  // The server's clock is fixed; a signature's timestamp is judged against it.
  const nowSeconds = (server: TestServer) => Math.floor(server.clock.nowMs() / 1000);

  function callback(server: TestServer, body: string, signature?: string) {
    return server.fastify.inject({
      method: "POST",
      url: "/v1/callbacks/gateway",
      headers: {
        "content-type": "application/json",
        ...(signature === undefined ? {} : { "x-verifyd-signature": signature }),
      },
      payload: body,
    });
  }

  it("applies a signed callback to the delivery it names", async () => {
    const { server, id, messageId } = await webhookSetup();
    expect(messageId).toMatch(/^msg_/);
    const body = JSON.stringify({ id: messageId, status: "failed", error: "handset off for 48 h" });
    const answer = await callback(server, body, signWebhookPayload(WEBHOOK_SECRET, nowSeconds(server), body));
    expect(answer.statusCode).toBe(200);
    expect(await eventuallyStatus(server, id, "failed")).toMatchObject([
      { provider: "gateway", status: "failed", error: "handset off for 48 h" },
    ]);
  });

  it("refuses an unsigned, a badly signed and a stale callback", async () => {
    const { server, id, messageId } = await webhookSetup();
    const body = JSON.stringify({ id: messageId, status: "delivered" });
    const now = nowSeconds(server);
    for (const signature of [
      undefined,
      signWebhookPayload("whsec_someone_else_0123", now, body),
      signWebhookPayload(WEBHOOK_SECRET, now, `${body} `),
      signWebhookPayload(WEBHOOK_SECRET, now - 3600, body),
    ]) {
      const answer = await callback(server, body, signature);
      expect(answer.statusCode).toBe(401);
      expect(answer.json().code).toBe("SIGNATURE_INVALID");
    }
    expect(await deliveries(server, id)).toMatchObject([{ provider: "gateway", status: "sent" }]);
  });

  it("settles an unconfirmed delivery when the gateway's receipt names the message", async () => {
    // the gateway takes the message but answers after the sender's timeout
    stub = await startSmsHttpStub({ status: 204, delayMs: 1_000 });
    const server = await start([
      { id: "gateway", type: "webhook", url: `${stub.url}/sms`, secret: WEBHOOK_SECRET, timeoutMs: 100 },
    ]);
    const id = await sendSms(server);
    await server.deliverAll();
    const messageId = String(stub.requests[0]?.headers["idempotency-key"]);
    expect(await deliveries(server, id)).toMatchObject([
      { provider: "gateway", status: "unconfirmed", provider_message_id: messageId },
    ]);
    const body = JSON.stringify({ id: messageId, status: "delivered" });
    const answer = await callback(server, body, signWebhookPayload(WEBHOOK_SECRET, nowSeconds(server), body));
    expect(answer.statusCode).toBe(200);
    expect(await eventuallyStatus(server, id, "delivered")).toMatchObject([
      { provider: "gateway", status: "delivered" },
    ]);
  });

  it("answers 400 to a signed callback it cannot read", async () => {
    const { server } = await webhookSetup();
    const body = JSON.stringify({ status: "delivered" });
    const answer = await callback(server, body, signWebhookPayload(WEBHOOK_SECRET, nowSeconds(server), body));
    expect(answer.statusCode).toBe(400);
    expect(answer.json().code).toBe("VALIDATION_FAILED");
  });
});

describe("SMPP delivery receipts", () => {
  it("marks the delivery delivered when the SMSC's deliver_sm receipt arrives", async () => {
    smsc = await startFakeSmsc({ systemId: "verifyd", password: "secret1", receiptStat: "DELIVRD" });
    const server = await start([
      {
        id: "smsc",
        type: "smpp",
        url: smsc.url,
        systemId: "verifyd",
        password: "secret1",
        sourceAddr: "Shop",
      },
    ]);
    await smsc.waitForBinds(1);
    const id = await sendSms(server);
    await server.deliverAll();
    expect(smsc.submits).toHaveLength(1);
    const list = await eventuallyStatus(server, id, "delivered");
    expect(list).toMatchObject([{ provider: "smsc", status: "delivered" }]);
    expect(smsc.acknowledgedReceipts).toEqual([smsc.submits[0]?.messageId]);
  });

  it("records an undeliverable receipt as failed with the SMSC's state", async () => {
    smsc = await startFakeSmsc({ systemId: "verifyd", password: "secret1", receiptStat: "UNDELIV" });
    const server = await start([
      {
        id: "smsc",
        type: "smpp",
        url: smsc.url,
        systemId: "verifyd",
        password: "secret1",
        sourceAddr: "Shop",
      },
    ]);
    await smsc.waitForBinds(1);
    const id = await sendSms(server);
    await server.deliverAll();
    expect(await eventuallyStatus(server, id, "failed")).toMatchObject([
      { provider: "smsc", status: "failed", error: "UNDELIV err:001" },
    ]);
  });
});
