import dysmsapiModule, { SendSmsRequest } from "@alicloud/dysmsapi20170525";
import { $OpenApiUtil, OpenApiUtil } from "@alicloud/openapi-core";
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
import { type AlibabaSmsOptions, createAlibabaSmsSender } from "./alibaba-sms-sender.js";

const ACCESS_KEY_ID = "LTAI5tEXAMPLEaccesskey";
const ACCESS_KEY_SECRET = "EXAMPLEsecret/with+odd=chars";
// Characters encodeURIComponent leaves alone and a space: the RPC encoding must still percent-encode them.
const message = renderedMessage({ to: "+8613800138000", messageId: "msg_alibaba_1 (retry)*!'~" });
const sendOptions = {
  signName: "阿里云 短信测试",
  templateCode: "SMS_154950909",
} satisfies Partial<AlibabaSmsOptions>;

// Node's loader hands an ESM importer the whole `module.exports`, vitest unwraps its `__esModule`
// default; accept either.
type DysmsapiClass = typeof dysmsapiModule.default;
const DysmsapiClient: DysmsapiClass =
  "default" in dysmsapiModule ? dysmsapiModule.default : (dysmsapiModule as unknown as DysmsapiClass);

type Verdict = { ok: true } | { ok: false; reason: string };

/** Every parameter of an RPC call, from the query string and a form body alike. */
function parameters(request: RecordedRequest): Record<string, string> {
  const query = new URL(request.path, "http://stub").searchParams;
  const isForm = String(request.headers["content-type"]).startsWith("application/x-www-form-urlencoded");
  return {
    ...Object.fromEntries(query),
    ...(isForm ? Object.fromEntries(new URLSearchParams(request.body)) : {}),
  };
}

/**
 * Verifies a request the way Dysmsapi does. The SDK's own `getRPCSignature` is the oracle: the
 * request is genuine only if recomputing the signature the SDK's way, over what arrived, matches.
 */
function verifyRpc(request: RecordedRequest, nowMs = Date.now()): Verdict {
  const { Signature: signature, ...signed } = parameters(request);
  if (!signature) return { ok: false, reason: "no Signature" };
  if (signed.AccessKeyId !== ACCESS_KEY_ID) return { ok: false, reason: "unknown AccessKeyId" };
  if (signed.SignatureMethod !== "HMAC-SHA1" || signed.SignatureVersion !== "1.0") {
    return { ok: false, reason: "unsupported signature method" };
  }
  if (!signed.SignatureNonce) return { ok: false, reason: "no SignatureNonce" };
  if (!/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/.test(signed.Timestamp ?? ""))
    return { ok: false, reason: "bad Timestamp" };
  if (Math.abs(nowMs - Date.parse(signed.Timestamp ?? "")) > 15 * 60_000)
    return { ok: false, reason: "stale" };
  const expected = OpenApiUtil.getRPCSignature(signed, request.method, ACCESS_KEY_SECRET);
  return expected === signature ? { ok: true } : { ok: false, reason: "signature mismatch" };
}

function answer(code: string, text: string, status = 200): StubReply {
  return {
    status,
    json: {
      Code: code,
      Message: text,
      RequestId: "F655A8D5-B967-440B-8683-DAD6FF8DE990",
      BizId: "900619746936498440^0",
    },
  };
}

/** Dysmsapi: refuses a bad signature the way the real service does, else accepts. */
function gateway(request: RecordedRequest): StubReply {
  const verdict = verifyRpc(request);
  return verdict.ok ? answer("OK", "OK") : answer("SignatureDoesNotMatch", verdict.reason, 400);
}

describe("createAlibabaSmsSender", () => {
  let stub: SmsHttpStub;

  beforeAll(async () => {
    stub = await startSmsHttpStub(gateway);
  });

  afterAll(async () => {
    await stub.close();
  });

  beforeEach(() => {
    stub.requests.length = 0;
  });

  async function sendWithSdk(): Promise<RecordedRequest> {
    const client = new DysmsapiClient(
      new $OpenApiUtil.Config({
        accessKeyId: ACCESS_KEY_ID,
        accessKeySecret: ACCESS_KEY_SECRET,
        endpoint: new URL(stub.url).host,
        protocol: "http",
        // the SDK's default is the V3 (ACS3-HMAC-SHA256) signature; "v2" selects the RPC one
        signatureAlgorithm: "v2",
      }),
    );
    await client.sendSms(
      new SendSmsRequest({
        phoneNumbers: "8613800138000",
        signName: sendOptions.signName,
        templateCode: sendOptions.templateCode,
        templateParam: JSON.stringify({ code: message.code }),
        outId: message.messageId,
      }),
    );
    const request = stub.requests.at(-1);
    if (!request) throw new Error("the SDK sent nothing");
    return request;
  }

  it("verifies the official SDK's signed request, and refuses it once a parameter changes", async () => {
    const fromSdk = await sendWithSdk();

    expect(verifyRpc(fromSdk)).toEqual({ ok: true });
    const tampered = { ...fromSdk, path: fromSdk.path.replace("042917", "042918") };
    expect(tampered.path).not.toBe(fromSdk.path);
    expect(verifyRpc(tampered)).toMatchObject({ ok: false });
  });

  it("signs a request the SDK's signer accepts, carrying the SDK's parameters, and returns the BizId", async () => {
    const fromSdk = await sendWithSdk();
    const sender = createAlibabaSmsSender({
      accessKeyId: ACCESS_KEY_ID,
      accessKeySecret: ACCESS_KEY_SECRET,
      ...sendOptions,
      baseUrl: stub.url,
    });

    const receipt = await sender.send(message);

    const fromSender = stub.requests.at(-1);
    if (!fromSender) throw new Error("the sender sent nothing");
    expect(verifyRpc(fromSender)).toEqual({ ok: true });
    expect(fromSender.method).toBe(fromSdk.method);
    // Per-request values differ by design; Format is case-insensitive ("JSON" in the docs, "json" in the SDK).
    const comparable = (request: RecordedRequest) => {
      const { Signature, SignatureNonce, Timestamp, Format, ...rest } = parameters(request);
      return { ...rest, Format: Format?.toUpperCase() };
    };
    expect(comparable(fromSender)).toEqual(comparable(fromSdk));
    expect(receipt.providerMessageId).toBe("900619746936498440^0");
  });

  it("is refused by the service when signed with the wrong secret, as a transient failure", async () => {
    const sender = createAlibabaSmsSender({
      accessKeyId: ACCESS_KEY_ID,
      accessKeySecret: "wrong",
      ...sendOptions,
      baseUrl: stub.url,
    });

    const failure = await sendFailure(sender.send(message));

    expect(failure.message).toContain("SignatureDoesNotMatch");
    expect(failure.permanent).toBe(false);
  });

  it("fills the named template variables", async () => {
    const sender = createAlibabaSmsSender({
      accessKeyId: ACCESS_KEY_ID,
      accessKeySecret: ACCESS_KEY_SECRET,
      ...sendOptions,
      templateParams: { code: "code", minutes: "minutes" },
      validityMinutes: 5,
      baseUrl: stub.url,
    });

    await sender.send(message);

    const sent = stub.requests.at(-1);
    expect(JSON.parse(sent ? (parameters(sent).TemplateParam ?? "") : "")).toEqual({
      code: "042917",
      minutes: "5",
    });
  });

  it.each([
    ["isv.MOBILE_NUMBER_ILLEGAL", true],
    ["isv.BUSINESS_LIMIT_CONTROL", false],
    ["isv.AMOUNT_NOT_ENOUGH", false],
    ["isp.SYSTEM_ERROR", false],
  ])("maps %s to permanent=%s", async (code, permanent) => {
    stub.enqueue(answer(code, "refused"));
    const sender = createAlibabaSmsSender({
      accessKeyId: ACCESS_KEY_ID,
      accessKeySecret: ACCESS_KEY_SECRET,
      ...sendOptions,
      baseUrl: stub.url,
    });

    const failure = await sendFailure(sender.send(message));

    expect(failure.permanent).toBe(permanent);
    expect(failure.message).toContain(code);
  });

  describeHttpFaults(
    (baseUrl, timeoutMs) =>
      createAlibabaSmsSender({
        accessKeyId: ACCESS_KEY_ID,
        accessKeySecret: ACCESS_KEY_SECRET,
        ...sendOptions,
        baseUrl,
        timeoutMs,
      }),
    message,
  );
});
