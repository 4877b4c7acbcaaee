import { createHmac, randomUUID } from "node:crypto";
import {
  type MessageSender,
  type RenderedMessage,
  SendFailure,
  type SendReceipt,
} from "../../../core/ports.js";
import { parseHttpUrl } from "../../provider-url.js";
import { fetchJson, isRecord } from "../fetch-json.js";
import { type TemplateValue, templateValue } from "../template-values.js";

const ALIBABA_BASE_URL = "https://dysmsapi.aliyuncs.com";

/**
 * Codes that describe the recipient itself (a malformed number), so no retry and no other route
 * helps. Flow control, balance, template and signature problems stay transient: they pass or an
 * operator fixes them, and another provider may deliver meanwhile.
 */
const PERMANENT_CODES = new Set(["isv.MOBILE_NUMBER_ILLEGAL", "isv.PHONE_NUMBER_ILLEGAL"]);

export interface AlibabaSmsOptions {
  accessKeyId: string;
  accessKeySecret: string;
  /** an approved signature, e.g. "阿里云短信测试" */
  signName: string;
  /** an approved template, e.g. "SMS_154950909" */
  templateCode: string;
  /** template variable name -> what fills it (default `{ code: "code" }`) */
  templateParams?: Record<string, TemplateValue>;
  /** fixes the minutes a template with a minutes variable announces (default: those the code has left) */
  validityMinutes?: number;
  /** provider id in delivery records (default "alibaba") */
  id?: string;
  /** default https://dysmsapi.aliyuncs.com */
  baseUrl?: string;
  timeoutMs?: number;
}

/**
 * An SMS sender using Alibaba Cloud Dysmsapi `SendSms` (2017-05-25), signed with the RPC
 * signature (HMAC-SHA1, SignatureVersion 1.0). The outbox message id travels as `OutId`, which
 * Alibaba echoes in its delivery reports; the provider message id is the `BizId`.
 */
export function createAlibabaSmsSender(options: AlibabaSmsOptions): MessageSender {
  const id = options.id ?? "alibaba";
  const url = parseHttpUrl(options.baseUrl ?? ALIBABA_BASE_URL);
  const templateParams = options.templateParams ?? { code: "code" };

  return {
    id,
    channel: "sms",
    async send(message: RenderedMessage): Promise<SendReceipt> {
      const variables = Object.fromEntries(
        Object.entries(templateParams).map(([name, value]) => [
          name,
          templateValue(value, message, options.validityMinutes),
        ]),
      );
      const parameters: Record<string, string> = {
        AccessKeyId: options.accessKeyId,
        Action: "SendSms",
        Format: "JSON",
        OutId: message.messageId,
        // Dysmsapi takes mainland numbers with or without 86 and others as country code + number,
        // never with a plus.
        PhoneNumbers: message.to.replace(/^\+/, ""),
        SignName: options.signName,
        SignatureMethod: "HMAC-SHA1",
        SignatureNonce: randomUUID(),
        SignatureVersion: "1.0",
        TemplateCode: options.templateCode,
        TemplateParam: JSON.stringify(variables),
        Timestamp: new Date().toISOString().replace(/\.\d{3}Z$/, "Z"),
        Version: "2017-05-25",
      };
      const canonical = canonicalQuery(parameters);
      const signature = rpcSignature("POST", canonical, options.accessKeySecret);

      const { status, body } = await fetchJson(
        id,
        url.href,
        {
          method: "POST",
          headers: { "content-type": "application/x-www-form-urlencoded", accept: "application/json" },
          body: `${canonical}&Signature=${percentEncode(signature)}`,
        },
        options.timeoutMs,
      );
      return readAnswer(id, status, body);
    },
  };
}

function readAnswer(id: string, status: number, body: unknown): SendReceipt {
  const code = isRecord(body) && typeof body.Code === "string" ? body.Code : undefined;
  if (status >= 500 || status === 429 || code === undefined) {
    // A 2xx says the gateway took the request, even one whose answer lacks a Code: it may go out.
    const taken = status >= 200 && status < 300;
    throw new SendFailure(`${id}: HTTP ${status}${code === undefined ? " without a Code" : `: ${code}`}`, {
      unconfirmed: taken && code === undefined,
    });
  }
  if (code !== "OK") {
    const detail = isRecord(body) && typeof body.Message === "string" ? `: ${body.Message}` : "";
    throw new SendFailure(`${id}: ${code}${detail}`, { permanent: PERMANENT_CODES.has(code) });
  }
  if (!isRecord(body) || typeof body.BizId !== "string") {
    throw new SendFailure(`${id}: OK without a BizId`, { unconfirmed: true });
  }
  return { providerMessageId: body.BizId };
}

/** RFC 3986 encoding as Alibaba's RPC signature requires (encodeURIComponent leaves !'()* alone). */
function percentEncode(value: string): string {
  return encodeURIComponent(value).replace(
    /[!'()*]/g,
    (char) => `%${char.charCodeAt(0).toString(16).toUpperCase()}`,
  );
}

function canonicalQuery(parameters: Record<string, string>): string {
  return Object.keys(parameters)
    .sort()
    .map((key) => `${percentEncode(key)}=${percentEncode(parameters[key] ?? "")}`)
    .join("&");
}

function rpcSignature(method: string, canonical: string, secret: string): string {
  const stringToSign = `${method}&${percentEncode("/")}&${percentEncode(canonical)}`;
  return createHmac("sha1", `${secret}&`).update(stringToSign).digest("base64");
}
