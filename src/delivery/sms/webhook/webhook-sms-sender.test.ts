import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { describeHttpFaults } from "../../../../test/servers/http-fault-suite.js";
import { renderedMessage } from "../../../../test/servers/rendered-message.js";
import { sendFailure } from "../../../../test/servers/send-failure.js";
import { type SmsHttpStub, startSmsHttpStub } from "../../../../test/servers/sms-http-stub.js";
import { signWebhookPayload, verifyWebhookSignature } from "./webhook-signature.js";
import { createWebhookSmsSender } from "./webhook-sms-sender.js";

const SECRET = "whsec_test_0123456789";
const message = renderedMessage({ to: "+14155550100", locale: "en-US", purpose: "reset_password" });
const nowSeconds = () => Math.floor(Date.now() / 1000);

describe("createWebhookSmsSender", () => {
  let stub: SmsHttpStub;

  beforeAll(async () => {
    stub = await startSmsHttpStub({ status: 202, json: { id: "gw-7781" } });
  });

  afterAll(async () => {
    await stub.close();
  });

  beforeEach(() => {
    stub.requests.length = 0;
  });

  const sender = (overrides = {}) =>
    createWebhookSmsSender({ url: `${stub.url}/hooks/sms`, secret: SECRET, ...overrides });

  it("POSTs the message as signed JSON with the message id as Idempotency-Key", async () => {
    const receipt = await sender().send(message);

    const request = stub.requests[0];
    if (!request) throw new Error("nothing was posted");
    expect(request.method).toBe("POST");
    expect(request.path).toBe("/hooks/sms");
    expect(request.headers["content-type"]).toBe("application/json");
    expect(request.headers["idempotency-key"]).toBe(message.messageId);
    expect(JSON.parse(request.body)).toEqual({
      id: message.messageId,
      to: "+14155550100",
      text: message.text,
      channel: "sms",
      app: "default",
      purpose: "reset_password",
      locale: "en-US",
    });
    const signature = String(request.headers["x-verifyd-signature"]);
    expect(signature).toMatch(/^t=\d+,v1=[0-9a-f]{64}$/);
    expect(verifyWebhookSignature(SECRET, signature, request.body, nowSeconds(), 300)).toBe(true);
    expect(receipt.providerMessageId).toBe("gw-7781");
  });

  it("accepts an empty or plain-text 2xx answer without a provider message id", async () => {
    stub.enqueue({ status: 204 }, { status: 200, body: "OK", headers: { "content-type": "text/plain" } });

    expect(await sender().send(message)).toEqual({});
    expect(await sender().send(message)).toEqual({});
  });

  it.each([400, 410, 422])("fails permanently on HTTP %i, a refusal of the recipient", async (status) => {
    stub.enqueue({ status, json: { error: "refused" } });

    const failure = await sendFailure(sender().send(message));

    expect(failure.permanent).toBe(true);
    expect(failure.message).toContain(String(status));
  });

  it.each([408, 429, 500, 502])("fails transiently on HTTP %i", async (status) => {
    stub.enqueue({ status, json: { error: "later" } });

    const failure = await sendFailure(sender().send(message));

    expect(failure.permanent).toBe(false);
  });

  // Regression: every 4xx but 408 and 429 was the recipient's fault, so a gateway refusing
  // verifyd's signature failed each message at once, never tried the next provider, and kept its
  // breaker closed. @see logs review 1
  it.each([401, 403, 404, 405, 409, 413, 415, 418])(
    "fails transiently on HTTP %i, a refusal of verifyd's request rather than the recipient",
    async (status) => {
      stub.enqueue({ status, json: { error: "bad credentials" } });

      const failure = await sendFailure(sender().send(message));

      expect(failure.permanent).toBe(false);
      expect(failure.message).toContain(`HTTP ${status}`);
    },
  );

  it("tells a refused secret and a wrong url apart in the failure", async () => {
    stub.enqueue({ status: 401 }, { status: 403 }, { status: 404 });

    const texts = [];
    for (let i = 0; i < 3; i++) texts.push((await sendFailure(sender().send(message))).message);

    expect(texts).toEqual([
      "webhook: HTTP 401 (the gateway refused verifyd's credentials: check the provider's secret)",
      "webhook: HTTP 403 (the gateway refused verifyd's credentials: check the provider's secret)",
      "webhook: HTTP 404 (the gateway has no such endpoint: check the provider's url)",
    ]);
  });

  describeHttpFaults(
    (baseUrl, timeoutMs) =>
      createWebhookSmsSender({ url: `${baseUrl}/hooks/sms`, secret: SECRET, timeoutMs }),
    message,
    { answerCarriesFields: false },
  );
});

describe("verifyWebhookSignature", () => {
  const body = '{"id":"msg_1","to":"+14155550100"}';
  const t = 1_700_000_000;
  const header = signWebhookPayload(SECRET, t, body);

  it("accepts a genuine signature within the tolerance, given as a string or the raw bytes", () => {
    expect(verifyWebhookSignature(SECRET, header, body, t + 299, 300)).toBe(true);
    expect(verifyWebhookSignature(SECRET, header, Buffer.from(body), t - 299, 300)).toBe(true);
  });

  it("rejects another secret, a changed body and a timestamp outside the tolerance", () => {
    expect(verifyWebhookSignature("other", header, body, t, 300)).toBe(false);
    expect(verifyWebhookSignature(SECRET, header, body.replace("msg_1", "msg_2"), t, 300)).toBe(false);
    expect(verifyWebhookSignature(SECRET, header, body, t + 301, 300)).toBe(false);
  });

  it("rejects a signature moved to another timestamp", () => {
    const v1 = header.split("v1=")[1];
    expect(verifyWebhookSignature(SECRET, `t=${t + 1},v1=${v1}`, body, t, 300)).toBe(false);
  });

  it("rejects malformed headers", () => {
    for (const bad of [
      "",
      "garbage",
      `t=${t}`,
      `v1=${"0".repeat(64)}`,
      `t=abc,v1=${"0".repeat(64)}`,
      `t=${t},v1=xyz`,
    ]) {
      expect(verifyWebhookSignature(SECRET, bad, body, t, 300), bad).toBe(false);
    }
  });

  it("accepts when any of several v1 signatures matches, for secret rotation", () => {
    const fromOld = signWebhookPayload("old-secret", t, body).split("v1=")[1];
    const fromNew = header.split("v1=")[1];
    expect(verifyWebhookSignature(SECRET, `t=${t},v1=${fromOld},v1=${fromNew}`, body, t, 300)).toBe(true);
  });
});
