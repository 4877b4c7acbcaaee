import { createHash, createHmac } from "node:crypto";
import {
  type MessageSender,
  type RenderedMessage,
  SendFailure,
  type SendReceipt,
} from "../../../core/ports.js";
import { parseHttpUrl } from "../../provider-url.js";
import { fetchJson, isRecord } from "../fetch-json.js";
import { type TemplateValue, templateValue } from "../template-values.js";

const TENCENT_BASE_URL = "https://sms.tencentcloudapi.com";
const SERVICE = "sms";
const ACTION = "SendSms";
const API_VERSION = "2021-01-11";
const CONTENT_TYPE = "application/json; charset=utf-8";

/**
 * Codes that describe the recipient itself (a malformed number, a number on the do-not-disturb
 * list), so no retry and no other route helps. Quota, template and signature problems stay
 * transient: an operator can fix them, and another provider may deliver meanwhile.
 */
const PERMANENT_CODES = new Set([
  "InvalidParameterValue.IncorrectPhoneNumber",
  "FailedOperation.PhoneNumberInBlacklist",
  "FailedOperation.PhoneNumberParseFail",
]);

export interface TencentSmsOptions {
  secretId: string;
  secretKey: string;
  /** the SMS application's SdkAppId, e.g. "1400006666" */
  smsSdkAppId: string;
  /** an approved signature; required for numbers in mainland China, optional abroad */
  signName?: string;
  /** an approved template, e.g. "您的验证码为{1}，{2}分钟内有效。" */
  templateId: string;
  /** what fills the template's {1}, {2}, … in order (default ["code", "minutes"]) */
  templateParams?: TemplateValue[];
  /** fixes the minutes the template announces (default: the minutes the code has left) */
  validityMinutes?: number;
  /** API region (default "ap-guangzhou") */
  region?: string;
  /** provider id in delivery records (default "tencent") */
  id?: string;
  /** default https://sms.tencentcloudapi.com */
  baseUrl?: string;
  timeoutMs?: number;
}

/**
 * An SMS sender using Tencent Cloud SMS `SendSms` (API 2021-01-11), signed with TC3-HMAC-SHA256.
 * The outbox message id travels as `SessionContext`, which Tencent echoes in its status reports;
 * the provider message id is the `SerialNo` of the send.
 */
export function createTencentSmsSender(options: TencentSmsOptions): MessageSender {
  const id = options.id ?? "tencent";
  const url = parseHttpUrl(options.baseUrl ?? TENCENT_BASE_URL);
  const templateParams = options.templateParams ?? ["code", "minutes"];

  return {
    id,
    channel: "sms",
    async send(message: RenderedMessage): Promise<SendReceipt> {
      const payload = JSON.stringify({
        PhoneNumberSet: [message.to],
        SmsSdkAppId: options.smsSdkAppId,
        ...(options.signName ? { SignName: options.signName } : {}),
        TemplateId: options.templateId,
        TemplateParamSet: templateParams.map((value) =>
          templateValue(value, message, options.validityMinutes),
        ),
        SessionContext: message.messageId,
      });
      const timestamp = Math.floor(Date.now() / 1000);
      const authorization = tc3Authorization({
        secretId: options.secretId,
        secretKey: options.secretKey,
        host: url.hostname,
        path: url.pathname,
        payload,
        timestamp,
      });

      const { status, body } = await fetchJson(
        id,
        url.href,
        {
          method: "POST",
          headers: {
            authorization,
            "content-type": CONTENT_TYPE,
            "x-tc-action": ACTION,
            "x-tc-version": API_VERSION,
            "x-tc-timestamp": String(timestamp),
            "x-tc-region": options.region ?? "ap-guangzhou",
          },
          body: payload,
        },
        options.timeoutMs,
      );
      return readSendStatus(id, status, body);
    },
  };
}

function readSendStatus(id: string, status: number, body: unknown): SendReceipt {
  // API 3.0 reports every business error inside a 200; any other status is the gateway's trouble.
  if (status !== 200) throw new SendFailure(`${id}: HTTP ${status}`);
  const response = isRecord(body) ? body.Response : undefined;
  // A 200 says the gateway took the request; one whose answer lacks what says how it went may
  // still have sent the message.
  if (!isRecord(response)) {
    throw new SendFailure(`${id}: answer without a Response object`, { unconfirmed: true });
  }

  const error = response.Error;
  if (isRecord(error)) {
    const code = typeof error.Code === "string" ? error.Code : "unknown";
    throw new SendFailure(`${id}: ${code}: ${String(error.Message ?? "")}`, {
      permanent: PERMANENT_CODES.has(code),
    });
  }
  const sendStatus = Array.isArray(response.SendStatusSet) ? response.SendStatusSet[0] : undefined;
  if (!isRecord(sendStatus) || typeof sendStatus.Code !== "string") {
    throw new SendFailure(`${id}: answer without a SendStatusSet entry`, { unconfirmed: true });
  }
  if (sendStatus.Code !== "Ok") {
    throw new SendFailure(`${id}: ${sendStatus.Code}: ${String(sendStatus.Message ?? "")}`, {
      permanent: PERMANENT_CODES.has(sendStatus.Code),
    });
  }
  return typeof sendStatus.SerialNo === "string" ? { providerMessageId: sendStatus.SerialNo } : {};
}

interface Tc3Input {
  secretId: string;
  secretKey: string;
  host: string;
  path: string;
  payload: string;
  timestamp: number;
}

/** TC3-HMAC-SHA256 over content-type and host, as Tencent Cloud API 3.0 specifies. */
function tc3Authorization(input: Tc3Input): string {
  const date = new Date(input.timestamp * 1000).toISOString().slice(0, 10);
  const signedHeaders = "content-type;host";
  const canonicalRequest = [
    "POST",
    input.path,
    "", // no query string
    `content-type:${CONTENT_TYPE}\nhost:${input.host}\n`,
    signedHeaders,
    sha256Hex(input.payload),
  ].join("\n");
  const scope = `${date}/${SERVICE}/tc3_request`;
  const stringToSign = ["TC3-HMAC-SHA256", String(input.timestamp), scope, sha256Hex(canonicalRequest)].join(
    "\n",
  );
  const secretDate = hmac(`TC3${input.secretKey}`, date);
  const secretService = hmac(secretDate, SERVICE);
  const secretSigning = hmac(secretService, "tc3_request");
  const signature = createHmac("sha256", secretSigning).update(stringToSign).digest("hex");
  return `TC3-HMAC-SHA256 Credential=${input.secretId}/${scope}, SignedHeaders=${signedHeaders}, Signature=${signature}`;
}

function sha256Hex(data: string): string {
  return createHash("sha256").update(data).digest("hex");
}

function hmac(key: string | Buffer, data: string): Buffer {
  return createHmac("sha256", key).update(data).digest();
}
