import { afterEach, describe, expect, it } from "vitest";
import type { AppConfig } from "../../src/config/schema.js";
import { AppDirectory } from "../../src/core/apps/apps.js";
import { createOutboxWorker } from "../../src/core/delivery/outbox-worker.js";
import { CodeSecrets } from "../../src/core/secrets.js";
import { RecordingSender } from "../fakes/recording-sender.js";
import { createTestServer, type TestServer } from "../harness.js";

/**
 * Issue 7 templates and i18n: the message language comes from the explicit locale, then the face's
 * language header, then the phone number's country, then the app default; SMS text can carry a
 * "do not share" line and ends with the WebOTP line when the app names its domain; the worker logs
 * each SMS's encoding and segment count.
 */

const SECRET = "i18n-test-secret-0123456789";

let t: TestServer | undefined;
afterEach(async () => {
  await t?.close();
  t = undefined;
});

async function start(app: Partial<AppConfig> = {}): Promise<TestServer> {
  t = await createTestServer({
    env: { VERIFYD_SECRET: SECRET },
    apps: [
      {
        id: "default",
        name: "Shop",
        abuse: { captcha: { native: "never" }, pumping: { safeList: ["+86", "+1"] } },
        ...app,
      },
    ],
  });
  return t;
}

async function send(
  server: TestServer,
  payload: Record<string, unknown>,
  headers: Record<string, string> = {},
) {
  const sent = await server.fastify.inject({
    method: "POST",
    url: "/v1/verifications",
    headers,
    payload: { purpose: "sign_in", ...payload },
  });
  expect(sent.statusCode).toBe(201);
}

const sms = (server: TestServer, to: string) => server.sms.messages.find((message) => message.to === to);

describe("the message language", () => {
  it("follows the phone number's country when nothing else names one (+86 -> zh-Hans)", async () => {
    const server = await start();
    await send(server, { channel: "sms", to: "+8613800138001" });
    await send(server, { channel: "sms", to: "+14155550101" });
    await server.deliverAll();
    expect(sms(server, "+8613800138001")).toMatchObject({ locale: "zh-Hans" });
    expect(sms(server, "+8613800138001")?.text).toMatch(/^您的Shop登录验证码是 \d{6}/);
    expect(sms(server, "+14155550101")).toMatchObject({ locale: "en" });
  });

  it("prefers the explicit locale, then the language header, over the country", async () => {
    const server = await start();
    await send(
      server,
      { channel: "sms", to: "+8613800138002", locale: "en" },
      { "accept-language": "zh-CN" },
    );
    await send(server, { channel: "sms", to: "+8613800138003" }, { "accept-language": "en-US,en;q=0.8" });
    await send(server, { channel: "sms", to: "+14155550102" }, { "accept-language": "zh-CN" });
    await server.deliverAll();
    expect(sms(server, "+8613800138002")?.locale).toBe("en");
    expect(sms(server, "+8613800138003")?.locale).toBe("en");
    expect(sms(server, "+14155550102")?.locale).toBe("zh-Hans");
  });

  it("puts the country before the app default, and the app default last", async () => {
    const server = await start({ defaultLocale: "zh-Hans" });
    await send(server, { channel: "sms", to: "+14155550103" });
    await send(server, { channel: "email", to: "ann@example.com" });
    await server.deliverAll();
    expect(sms(server, "+14155550103")?.locale).toBe("en");
    expect(server.email.messages[0]?.locale).toBe("zh-Hans");
  });
});

describe("SMS text options", () => {
  it("adds nothing by default", async () => {
    const server = await start();
    await send(server, { channel: "sms", to: "+14155550104" });
    await server.deliverAll();
    const message = sms(server, "+14155550104");
    expect(message?.text).toBe(
      `Your Shop sign-in code is ${message?.code}. It expires in 10 minutes. If you did not try to sign in, ignore this message.`,
    );
  });

  it("adds the warning line in the message's language and ends with the WebOTP line", async () => {
    const server = await start({ sms: { warning: true, webOtpDomain: "shop.example" } });
    await send(server, { channel: "sms", to: "+14155550105" });
    await send(server, { channel: "sms", to: "+8613800138005" });
    await send(server, { channel: "email", to: "bob@example.com" });
    await server.deliverAll();
    const english = sms(server, "+14155550105");
    expect(english?.text.split("\n").slice(-3)).toEqual([
      "Do not share this code with anyone.",
      "",
      `@shop.example #${english?.code}`,
    ]);
    const chinese = sms(server, "+8613800138005");
    expect(chinese?.text).toContain("\n请勿将验证码告知他人。\n\n@shop.example #");
    expect(chinese?.text.endsWith(`#${chinese?.code}`)).toBe(true);
    // email is untouched
    expect(server.email.messages[0]?.text).not.toContain("@shop.example");
  });
});

describe("SMS encoding and segments", () => {
  it("logs each SMS's encoding and segment count when it is sent", async () => {
    const server = await start({ sms: { warning: true, webOtpDomain: "shop.example" } });
    await send(server, { channel: "sms", to: "+8613800138006" });
    await send(server, { channel: "sms", to: "+14155550106" });
    const logged: Record<string, unknown>[] = [];
    const capture = (object: object, message?: string) => {
      if (message === "message sent") logged.push(object as Record<string, unknown>);
    };
    const { backend } = server.server;
    const worker = createOutboxWorker({
      outbox: backend.outbox,
      apps: new AppDirectory(backend.apps, server.clock),
      secrets: new CodeSecrets([SECRET]),
      clock: server.clock,
      logger: { debug() {}, info: capture, warn() {}, error() {} },
      route: () => [new RecordingSender("sms")],
    });
    await worker.runOnce();
    expect(logged).toEqual(
      expect.arrayContaining([
        // one Chinese character makes the whole text UCS-2: 70 units per SMS, so the extra lines cost a part
        expect.objectContaining({ channel: "sms", encoding: "UCS-2", units: 78, segments: 2 }),
        // English with the warning and WebOTP lines is longer than one 160-septet SMS
        expect.objectContaining({ channel: "sms", encoding: "GSM-7", units: 170, segments: 2 }),
      ]),
    );
  });
});
