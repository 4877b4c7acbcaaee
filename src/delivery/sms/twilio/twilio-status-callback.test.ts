import twilio from "twilio";
import { describe, expect, it } from "vitest";
import {
  createTwilioStatusCallback,
  twilioSignature,
  verifyTwilioSignature,
} from "./twilio-status-callback.js";

const AUTH_TOKEN = "twilio-auth-token-0123456789";
const URL_ = "https://verifyd.example.com/v1/callbacks/twilio";
const params = {
  MessageSid: `SM${"d4".repeat(16)}`,
  MessageStatus: "delivered",
  To: "+14155550100",
  From: "+14155550199",
  Body: "Your code is 042917 & more = fun + 1",
  ApiVersion: "2010-04-01",
};

describe("Twilio request signatures, checked against the official SDK", () => {
  it("computes the signature twilio.getExpectedTwilioSignature computes", () => {
    expect(twilioSignature(AUTH_TOKEN, URL_, new URLSearchParams(params))).toBe(
      twilio.getExpectedTwilioSignature(AUTH_TOKEN, URL_, params),
    );
  });

  it("agrees with twilio.validateRequest on genuine and forged requests", () => {
    const genuine = twilio.getExpectedTwilioSignature(AUTH_TOKEN, URL_, params);
    const cases: [string, string, Record<string, string>][] = [
      [genuine, URL_, params],
      [genuine, "https://verifyd.example.com:443/v1/callbacks/twilio", params],
      [genuine, URL_, { ...params, MessageStatus: "failed" }],
      [genuine, "https://verifyd.example.com/v1/callbacks/other", params],
      [twilio.getExpectedTwilioSignature("other-token", URL_, params), URL_, params],
      ["", URL_, params],
      [`${genuine.slice(0, -2)}AA`, URL_, params],
    ];
    // A URL carrying basic-auth credentials: Twilio's helper libraries (Node, Python, C#, Java)
    // sign and check it with the credentials in, trying it with and without the default port only.
    const withCredentials = "https://twilio:s3cret@verifyd.example.com/v1/callbacks/twilio";
    const signedWithCredentials = twilio.getExpectedTwilioSignature(AUTH_TOKEN, withCredentials, params);
    cases.push(
      [signedWithCredentials, withCredentials, params],
      [signedWithCredentials, "https://twilio:s3cret@verifyd.example.com:443/v1/callbacks/twilio", params],
      [signedWithCredentials, URL_, params],
      [genuine, withCredentials, params],
    );
    for (const [signature, url, body] of cases) {
      expect(verifyTwilioSignature(AUTH_TOKEN, signature, url, new URLSearchParams(body))).toBe(
        twilio.validateRequest(AUTH_TOKEN, signature, url, body),
      );
    }
  });
});

describe("createTwilioStatusCallback", () => {
  const handler = createTwilioStatusCallback({
    provider: "twilio",
    authToken: AUTH_TOKEN,
    statusCallbackUrl: URL_,
  });
  const request = (body: Record<string, string>, signature?: string) => ({
    // the URL as the proxy handed it to us differs; the configured URL is what Twilio signed
    url: "http://127.0.0.1:8080/v1/callbacks/twilio",
    headers: signature === undefined ? {} : { "x-twilio-signature": signature },
    rawBody: new URLSearchParams(body).toString(),
    nowMs: 0,
  });
  const signed = (body: Record<string, string>) =>
    request(body, twilio.getExpectedTwilioSignature(AUTH_TOKEN, URL_, body));

  it("turns final states into receipts and ignores the ones on the way", () => {
    expect(handler.handle(signed(params))).toEqual({
      kind: "receipts",
      receipts: [{ provider: "twilio", providerMessageId: params.MessageSid, status: "delivered" }],
    });
    expect(handler.handle(signed({ ...params, MessageStatus: "failed", ErrorCode: "30008" }))).toEqual({
      kind: "receipts",
      receipts: [
        {
          provider: "twilio",
          providerMessageId: params.MessageSid,
          status: "failed",
          error: "failed error 30008",
        },
      ],
    });
    expect(handler.handle(signed({ ...params, MessageStatus: "sending" }))).toEqual({
      kind: "receipts",
      receipts: [],
    });
  });

  it("believes nothing without a valid signature", () => {
    expect(handler.handle(request(params)).kind).toBe("unauthenticated");
    expect(handler.handle(request(params, "bm90IGEgc2lnbmF0dXJl")).kind).toBe("unauthenticated");
  });

  it("answers invalid to a signed request without a message sid", () => {
    const { MessageSid: _sid, ...rest } = params;
    expect(handler.handle(signed(rest)).kind).toBe("invalid");
  });
});

// Twilio reads connection overrides from the configured URL's fragment (`#rc=3&ct=2000`); no
// request carries it, and whether the signature covers it is not documented.
describe("createTwilioStatusCallback with connection overrides in the URL", () => {
  const withOverrides = `${URL_}#rc=3&ct=2000`;
  const handler = createTwilioStatusCallback({
    provider: "twilio",
    authToken: AUTH_TOKEN,
    statusCallbackUrl: withOverrides,
  });
  const request = (signature: string) => ({
    url: "http://127.0.0.1:8080/v1/callbacks/twilio",
    headers: { "x-twilio-signature": signature },
    rawBody: new URLSearchParams(params).toString(),
    nowMs: 0,
  });

  it("accepts a request signed over the URL with its fragment or without", () => {
    for (const signedUrl of [withOverrides, URL_]) {
      const signature = twilio.getExpectedTwilioSignature(AUTH_TOKEN, signedUrl, params);
      expect(handler.handle(request(signature)).kind).toBe("receipts");
    }
    const forged = twilio.getExpectedTwilioSignature(AUTH_TOKEN, `${URL_}/other`, params);
    expect(handler.handle(request(forged)).kind).toBe("unauthenticated");
  });
});
