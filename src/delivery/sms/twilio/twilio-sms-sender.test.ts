import twilio from "twilio";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { describeHttpFaults } from "../../../../test/servers/http-fault-suite.js";
import { renderedMessage } from "../../../../test/servers/rendered-message.js";
import { sendFailure } from "../../../../test/servers/send-failure.js";
import {
  type RecordedRequest,
  type SmsHttpStub,
  startSmsHttpStub,
} from "../../../../test/servers/sms-http-stub.js";
import { createTwilioSmsSender } from "./twilio-sms-sender.js";

const ACCOUNT_SID = `AC${"a1".repeat(16)}`;
const AUTH_TOKEN = "auth-token-0123456789";
const API_KEY_SID = `SK${"b2".repeat(16)}`;
const API_KEY_SECRET = "api-key-secret-0123456789";
const MESSAGING_SERVICE_SID = `MG${"c3".repeat(16)}`;
const message = renderedMessage({ to: "+14155550100" });
const accepted = { status: 201, json: { sid: `SM${"d4".repeat(16)}`, status: "queued" } };

function form(request: RecordedRequest | undefined): Record<string, string> {
  return Object.fromEntries(new URLSearchParams(request?.body ?? ""));
}

/** What the official SDK puts on the wire is the reference our request must match. */
function wire(request: RecordedRequest | undefined) {
  return {
    method: request?.method,
    path: request?.path,
    authorization: request?.headers.authorization,
    contentType: request?.headers["content-type"]?.split(";")[0],
    form: form(request),
  };
}

describe("createTwilioSmsSender", () => {
  let stub: SmsHttpStub;

  beforeAll(async () => {
    stub = await startSmsHttpStub(accepted);
  });

  afterAll(async () => {
    await stub.close();
  });

  beforeEach(() => {
    stub.requests.length = 0;
  });

  it("sends what the official SDK sends (auth token, From, StatusCallback) and returns the message sid", async () => {
    const client = twilio(ACCOUNT_SID, AUTH_TOKEN);
    client.api.baseUrl = stub.url;
    await client.messages.create({
      to: message.to,
      from: "+14155550199",
      body: message.text,
      statusCallback: "https://hooks.acme.example/twilio",
    });
    const sender = createTwilioSmsSender({
      accountSid: ACCOUNT_SID,
      authToken: AUTH_TOKEN,
      from: "+14155550199",
      statusCallbackUrl: "https://hooks.acme.example/twilio",
      baseUrl: stub.url,
    });

    const receipt = await sender.send(message);

    const [fromSdk, fromSender] = stub.requests;
    expect(wire(fromSender)).toEqual(wire(fromSdk));
    expect(wire(fromSender)).toMatchObject({
      method: "POST",
      path: `/2010-04-01/Accounts/${ACCOUNT_SID}/Messages.json`,
      form: { To: "+14155550100", From: "+14155550199", Body: message.text },
    });
    expect(receipt.providerMessageId).toBe(accepted.json.sid);
    expect(sender.id).toBe("twilio");
    expect(sender.channel).toBe("sms");
  });

  it("sends what the official SDK sends with an API key and a messaging service", async () => {
    const client = twilio(API_KEY_SID, API_KEY_SECRET, { accountSid: ACCOUNT_SID });
    client.api.baseUrl = stub.url;
    await client.messages.create({
      to: message.to,
      messagingServiceSid: MESSAGING_SERVICE_SID,
      body: message.text,
    });
    const sender = createTwilioSmsSender({
      accountSid: ACCOUNT_SID,
      apiKeySid: API_KEY_SID,
      apiKeySecret: API_KEY_SECRET,
      messagingServiceSid: MESSAGING_SERVICE_SID,
      baseUrl: stub.url,
      id: "twilio-eu",
    });

    await sender.send(message);

    const [fromSdk, fromSender] = stub.requests;
    expect(wire(fromSender)).toEqual(wire(fromSdk));
    expect(form(fromSender)).not.toHaveProperty("From");
    expect(sender.id).toBe("twilio-eu");
  });

  it.each([
    [21211, "The 'To' number +14155550100 is not a valid phone number."],
    [21614, "'To' number is not a valid mobile number"],
    [21610, "Attempt to send to unsubscribed recipient"],
  ])("fails permanently on recipient error %i", async (code, text) => {
    stub.enqueue({ status: 400, json: { code, message: text, status: 400 } });
    const sender = createTwilioSmsSender({
      accountSid: ACCOUNT_SID,
      authToken: AUTH_TOKEN,
      from: "+1",
      baseUrl: stub.url,
    });

    const failure = await sendFailure(sender.send(message));

    expect(failure.permanent).toBe(true);
    expect(failure.message).toContain(String(code));
  });

  it.each([
    [401, 20003, "Authenticate"],
    [400, 21408, "Permission to send an SMS has not been enabled for the region"],
    [400, 21606, "The From phone number is not a valid, SMS-capable inbound phone number"],
  ])("fails transiently on account or sender error (HTTP %i, code %i)", async (status, code, text) => {
    stub.enqueue({ status, json: { code, message: text, status } });
    const sender = createTwilioSmsSender({
      accountSid: ACCOUNT_SID,
      authToken: AUTH_TOKEN,
      from: "+1",
      baseUrl: stub.url,
    });

    const failure = await sendFailure(sender.send(message));

    expect(failure.permanent).toBe(false);
  });

  describeHttpFaults(
    (baseUrl, timeoutMs) =>
      createTwilioSmsSender({
        accountSid: ACCOUNT_SID,
        authToken: AUTH_TOKEN,
        from: "+1",
        baseUrl,
        timeoutMs,
      }),
    message,
  );
});
