import { Agent } from "node:http";
import type { LookupFunction } from "node:net";
import tencentCommonSign from "tencentcloud-sdk-nodejs-common/tencentcloud/common/sign.js";
import tencentSms from "tencentcloud-sdk-nodejs-sms";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { describeHttpFaults } from "../../../../test/servers/http-fault-suite.js";
import { renderedMessage } from "../../../../test/servers/rendered-message.js";
import { sendFailure } from "../../../../test/servers/send-failure.js";
import {
  type RecordedRequest,
  type SmsHttpStub,
  type StubReply,
  startSmsHttpStub,
} from "../../../../test/servers/sms-http-stub.js";
import { createTencentSmsSender, type TencentSmsOptions } from "./tencent-sms-sender.js";

const SECRET_ID = "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE";
const SECRET_KEY = "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE";
const message = renderedMessage({ to: "+8613800138000", messageId: "msg_tencent_1" });
const sendOptions = {
  smsSdkAppId: "1400006666",
  signName: "腾讯云",
  templateId: "1110",
} satisfies Partial<TencentSmsOptions>;

// The SDK's own TC3 signer is the oracle: a request is genuine only if recomputing its
// signature the SDK's way, from the bytes that arrived, gives the Authorization it carries.
// Node's loader hands an ESM importer the whole `module.exports`, vitest unwraps its `__esModule`
// default; accept either.
type Sign = typeof tencentCommonSign.default;
const sdkSign: Sign =
  "sign3" in tencentCommonSign ? (tencentCommonSign as unknown as Sign) : tencentCommonSign.default;

type Verdict = { ok: true } | { ok: false; reason: string };

/** Verifies a request the way Tencent's gateway does, using the SDK's signer on the received bytes. */
function verifyTc3(request: RecordedRequest, nowSeconds = Math.floor(Date.now() / 1000)): Verdict {
  const authorization = request.headers.authorization ?? "";
  const match =
    /^TC3-HMAC-SHA256 Credential=([^/]+)\/(\d{4}-\d{2}-\d{2})\/([a-z]+)\/tc3_request, SignedHeaders=content-type;host, Signature=[0-9a-f]{64}$/.exec(
      authorization,
    );
  if (!match) return { ok: false, reason: `malformed Authorization: ${authorization}` };
  const [, secretId, date, service] = match;
  const timestamp = Number(request.headers["x-tc-timestamp"]);
  if (secretId !== SECRET_ID) return { ok: false, reason: "unknown SecretId" };
  if (service !== "sms") return { ok: false, reason: `credential scope names service ${service}` };
  if (date !== new Date(timestamp * 1000).toISOString().slice(0, 10))
    return { ok: false, reason: "date mismatch" };
  if (Math.abs(nowSeconds - timestamp) > 300) return { ok: false, reason: "signature expired" };
  const expected = sdkSign.sign3({
    method: request.method,
    url: `http://${request.headers.host ?? ""}${request.path}`,
    payload: Buffer.from(request.body, "utf8"),
    timestamp,
    service: "sms",
    secretId: SECRET_ID,
    secretKey: SECRET_KEY,
    multipart: false,
    boundary: "",
    headers: { "Content-Type": String(request.headers["content-type"]) },
  });
  return expected === authorization ? { ok: true } : { ok: false, reason: "signature mismatch" };
}

function sendStatus(code: string, text: string): StubReply {
  return {
    json: {
      Response: {
        SendStatusSet: [
          {
            SerialNo: "2640:4567",
            PhoneNumber: message.to,
            Fee: 1,
            SessionContext: "",
            Code: code,
            Message: text,
          },
        ],
        RequestId: "a0aabda6-cf91-4f3e-a2a0-6ef7e5b3d9c1",
      },
    },
  };
}

/** Tencent's gateway: refuses a bad signature the way the real one does, else accepts. */
function gateway(request: RecordedRequest): StubReply {
  const verdict = verifyTc3(request);
  if (!verdict.ok) {
    return {
      json: {
        Response: {
          Error: { Code: "AuthFailure.SignatureFailure", Message: verdict.reason },
          RequestId: "r",
        },
      },
    };
  }
  return sendStatus("Ok", "send success");
}

/** Lets the SDK sign for the real host name while the socket goes to the loopback stub. */
const toLoopback: LookupFunction = (_hostname, options, callback) => {
  if (options.all) callback(null, [{ address: "127.0.0.1", family: 4 }]);
  else callback(null, "127.0.0.1", 4);
};

describe("createTencentSmsSender", () => {
  let stub: SmsHttpStub;
  const agent = new Agent({ lookup: toLoopback });

  beforeAll(async () => {
    stub = await startSmsHttpStub(gateway);
  });

  afterAll(async () => {
    agent.destroy();
    await stub.close();
  });

  beforeEach(() => {
    stub.requests.length = 0;
  });

  async function sendWithSdk(): Promise<RecordedRequest> {
    const port = new URL(stub.url).port;
    const client = new tencentSms.sms.v20210111.Client({
      credential: { secretId: SECRET_ID, secretKey: SECRET_KEY },
      region: "ap-guangzhou",
      profile: { httpProfile: { endpoint: `sms.tencentcloudapi.com:${port}`, protocol: "http://", agent } },
    });
    await client.SendSms({
      PhoneNumberSet: [message.to],
      SmsSdkAppId: sendOptions.smsSdkAppId,
      SignName: sendOptions.signName,
      TemplateId: sendOptions.templateId,
      TemplateParamSet: [message.code, "10"],
      SessionContext: message.messageId,
    });
    const request = stub.requests.at(-1);
    if (!request) throw new Error("the SDK sent nothing");
    return request;
  }

  it("verifies the official SDK's signed request, and refuses it once a byte changes", async () => {
    const fromSdk = await sendWithSdk();

    expect(fromSdk.headers.host).toMatch(/^sms\.tencentcloudapi\.com:\d+$/);
    expect(verifyTc3(fromSdk)).toEqual({ ok: true });
    expect(verifyTc3({ ...fromSdk, body: fromSdk.body.replace("042917", "042918") })).toMatchObject({
      ok: false,
    });
  });

  it("signs a request the SDK's signer accepts, with the SDK's action, version, region and body", async () => {
    const fromSdk = await sendWithSdk();
    const sender = createTencentSmsSender({
      secretId: SECRET_ID,
      secretKey: SECRET_KEY,
      ...sendOptions,
      baseUrl: stub.url,
    });

    const receipt = await sender.send(message);

    const fromSender = stub.requests.at(-1);
    if (!fromSender) throw new Error("the sender sent nothing");
    expect(verifyTc3(fromSender)).toEqual({ ok: true });
    expect(fromSender.method).toBe("POST");
    expect(fromSender.path).toBe("/");
    for (const header of ["x-tc-action", "x-tc-version", "x-tc-region"]) {
      expect(fromSender.headers[header], header).toBe(fromSdk.headers[header]);
    }
    expect(JSON.parse(fromSender.body)).toEqual(JSON.parse(fromSdk.body));
    expect(receipt.providerMessageId).toBe("2640:4567");
  });

  it("is refused by the gateway when signed with the wrong secret key, as a transient failure", async () => {
    const sender = createTencentSmsSender({
      secretId: SECRET_ID,
      secretKey: "wrong",
      ...sendOptions,
      baseUrl: stub.url,
    });

    const failure = await sendFailure(sender.send(message));

    expect(failure.message).toContain("AuthFailure.SignatureFailure");
    expect(failure.permanent).toBe(false);
  });

  it("fills the template parameters in the configured order", async () => {
    const sender = createTencentSmsSender({
      secretId: SECRET_ID,
      secretKey: SECRET_KEY,
      ...sendOptions,
      templateParams: ["minutes", "code"],
      validityMinutes: 5,
      baseUrl: stub.url,
    });

    await sender.send(message);

    expect(JSON.parse(stub.requests.at(-1)?.body ?? "{}")).toMatchObject({
      TemplateParamSet: ["5", "042917"],
    });
  });

  // Regression: "minutes" was a constant 10 whatever the app's code TTL or the message's delay,
  // while our own text states the minutes the code has left.
  it("fills minutes with the minutes the code has left unless validityMinutes fixes them", async () => {
    const sender = createTencentSmsSender({
      secretId: SECRET_ID,
      secretKey: SECRET_KEY,
      ...sendOptions,
      baseUrl: stub.url,
    });

    await sender.send({ ...message, minutes: 3 });

    expect(JSON.parse(stub.requests.at(-1)?.body ?? "{}")).toMatchObject({
      TemplateParamSet: ["042917", "3"],
    });
  });

  it.each([
    ["InvalidParameterValue.IncorrectPhoneNumber", true],
    ["FailedOperation.PhoneNumberInBlacklist", true],
    ["LimitExceeded.PhoneNumberDailyLimit", false],
    ["FailedOperation.TemplateIncorrectOrUnapproved", false],
  ])("maps send status %s to permanent=%s", async (code, permanent) => {
    stub.enqueue(sendStatus(code, "refused"));
    const sender = createTencentSmsSender({
      secretId: SECRET_ID,
      secretKey: SECRET_KEY,
      ...sendOptions,
      baseUrl: stub.url,
    });

    const failure = await sendFailure(sender.send(message));

    expect(failure.permanent).toBe(permanent);
    expect(failure.message).toContain(code);
  });

  it("fails on a Response.Error, permanently only for a recipient error", async () => {
    const sender = createTencentSmsSender({
      secretId: SECRET_ID,
      secretKey: SECRET_KEY,
      ...sendOptions,
      baseUrl: stub.url,
    });
    const error = (code: string): StubReply => ({
      json: { Response: { Error: { Code: code, Message: "refused" }, RequestId: "r" } },
    });

    stub.enqueue(error("InternalError.Timeout"), error("InvalidParameterValue.IncorrectPhoneNumber"));

    expect((await sendFailure(sender.send(message))).permanent).toBe(false);
    expect((await sendFailure(sender.send(message))).permanent).toBe(true);
  });

  describeHttpFaults(
    (baseUrl, timeoutMs) =>
      createTencentSmsSender({
        secretId: SECRET_ID,
        secretKey: SECRET_KEY,
        ...sendOptions,
        baseUrl,
        timeoutMs,
      }),
    message,
  );
});
