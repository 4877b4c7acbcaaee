import { afterEach, describe, expect, it } from "vitest";
import { RecordingSender } from "../../test/fakes/recording-sender.js";
import type { ProviderConfig } from "../config/provider-schema.js";
import { newApp } from "../core/apps/apps.js";
import type { MessageSender } from "../core/ports.js";
import type { Channel, OutboxMessage } from "../core/types.js";
import { createProviderRegistry, describeProviders, type ProviderRegistry } from "./provider-registry.js";

const silent = { debug() {}, info() {}, warn() {}, error() {} };
const accountSid = `AC${"a1".repeat(16)}`;

const providers: ProviderConfig[] = [
  { id: "mail", type: "smtp", url: "smtp://127.0.0.1:1", from: "codes@shop.example" },
  {
    id: "backup-mail",
    type: "webhook",
    channel: "email",
    url: "http://127.0.0.1:1/mail",
    secret: "whsec_0123456789abcdef",
  },
  { id: "twilio", type: "twilio", accountSid, authToken: "token", from: "+14155550199" },
  {
    id: "tencent",
    type: "tencent",
    secretId: "id",
    secretKey: "key",
    smsSdkAppId: "1400006666",
    templateId: "1110",
  },
  {
    id: "alibaba",
    type: "alibaba",
    accessKeyId: "id",
    accessKeySecret: "secret",
    signName: "阿里云短信测试",
    templateCode: "SMS_154950909",
  },
  { id: "gateway", type: "webhook", url: "http://127.0.0.1:1/sms", secret: "whsec_0123456789abcdef" },
];

const message = (channel: Channel, to: string, appId = "shop"): OutboxMessage => ({
  id: "msg_1",
  appId,
  verificationId: "vf_1",
  channel,
  to,
  purpose: "sign_in",
  locale: "en",
  sealedCode: "",
  createdAtMs: 0,
  deliverBeforeMs: 1,
  attempts: 1,
});
const ids = (senders: MessageSender[]) => senders.map((sender) => sender.id);

let registry: ProviderRegistry | undefined;
afterEach(async () => {
  await registry?.close();
  registry = undefined;
});

function build(options: Partial<Parameters<typeof createProviderRegistry>[0]> = {}) {
  registry = createProviderRegistry({
    providers,
    routing: {},
    logger: silent,
    onReceipt: () => {},
    ...options,
  });
  return registry;
}

describe("createProviderRegistry", () => {
  it("builds one sender per provider, with its configured id and channel", () => {
    const { senders } = build();
    expect(senders.map((sender) => [sender.id, sender.channel])).toEqual([
      ["mail", "email"],
      ["backup-mail", "email"],
      ["twilio", "sms"],
      ["tencent", "sms"],
      ["alibaba", "sms"],
      ["gateway", "sms"],
    ]);
  });

  // Regression: an SMTP URL with a login and neither smtps:// nor ?requireTLS=true sent the login
  // and every code in cleartext to a relay that offered no STARTTLS, and nothing said so.
  it("warns at start of settings that work but put codes at risk, naming the provider and key", () => {
    const warnings: object[] = [];
    build({
      providers: [
        {
          id: "relay",
          type: "smtp",
          url: "smtp://mailer:s3cret@smtp.example.com:587",
          from: "codes@shop.example",
        },
        ...providers,
      ],
      logger: {
        ...silent,
        warn: (fields: object, message?: string) => void warnings.push({ fields, message }),
      },
    });
    expect(warnings).toEqual([
      { fields: { provider: "relay", key: "url" }, message: expect.stringContaining("cleartext") },
    ]);
    expect(JSON.stringify(warnings)).not.toContain("s3cret");
  });

  it("routes a channel without a routing entry to all its providers in declaration order", () => {
    const { route } = build();
    const shop = newApp({ id: "shop" });
    expect(ids(route(message("email", "a@example.com"), shop))).toEqual(["mail", "backup-mail"]);
    expect(ids(route(message("sms", "+14155550100"), shop))).toEqual([
      "twilio",
      "tencent",
      "alibaba",
      "gateway",
    ]);
  });

  it("follows routing per channel, country and app", () => {
    const { route } = build({
      routing: { sms: ["twilio", "gateway"], "sms:CN": ["tencent", "alibaba"], "acme/sms": ["gateway"] },
    });
    expect(ids(route(message("sms", "+14155550100"), newApp({ id: "shop" })))).toEqual(["twilio", "gateway"]);
    expect(ids(route(message("sms", "+8613800138000"), newApp({ id: "shop" })))).toEqual([
      "tencent",
      "alibaba",
    ]);
    expect(ids(route(message("sms", "+8613800138000", "acme"), newApp({ id: "acme" })))).toEqual(["gateway"]);
  });

  it("offers status callbacks for Twilio and webhook providers only", () => {
    expect(build().callbacks.map((callback) => callback.provider)).toEqual([
      "backup-mail",
      "twilio",
      "gateway",
    ]);
  });

  it("disables a channel with no provider, unless a fallback (dev mode) serves it", () => {
    const smsOnly = build({ providers: providers.filter((provider) => provider.id === "gateway") });
    expect(smsOnly.channelEnabled("sms")).toBe(true);
    expect(smsOnly.channelEnabled("email")).toBe(false);
    const dev = new RecordingSender("email", "dev");
    const withFallback = build({
      providers: providers.filter((provider) => provider.id === "gateway"),
      fallback: (channel) => (channel === "email" ? dev : undefined),
    });
    expect(withFallback.channelEnabled("email")).toBe(true);
    expect(ids(withFallback.route(message("email", "a@example.com"), newApp({ id: "shop" })))).toEqual([
      "dev",
    ]);
  });

  it("lets overrides replace a channel's providers and routes entirely", () => {
    const recording = new RecordingSender("sms");
    const { route, senders } = build({ routing: { "sms:CN": ["tencent"] }, overrides: { sms: [recording] } });
    expect(ids(route(message("sms", "+8613800138000"), newApp({ id: "shop" })))).toEqual(["recording-sms"]);
    // the overridden channel's providers were never built
    expect(ids(senders)).toEqual(["mail", "backup-mail", "recording-sms"]);
  });

  it("treats an override left undefined as no override, and still closes", async () => {
    const { senders } = build({ overrides: { sms: undefined } });
    expect(ids(senders)).toContain("tencent");
    await registry?.close();
  });
});

describe("describeProviders", () => {
  it("agrees with the registry built from the same configuration, without building a sender", async () => {
    const dev = (channel: Channel) => new RecordingSender(channel, "dev");
    for (const chosen of [providers, providers.filter((provider) => provider.id === "gateway"), []]) {
      for (const devFallback of [false, true]) {
        const surface = describeProviders(chosen, devFallback);
        const built = build({ providers: chosen, ...(devFallback ? { fallback: dev } : {}) });
        for (const channel of ["email", "sms"] as const)
          expect(surface.channelEnabled(channel)).toBe(built.channelEnabled(channel));
        expect(surface.callbacks.map((callback) => callback.provider)).toEqual(
          built.callbacks.map((callback) => callback.provider),
        );
        await built.close();
      }
    }
  });
});
