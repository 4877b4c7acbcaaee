import { describe, expect, it } from "vitest";
import { newApp } from "../apps/apps.js";
import type { MessageSender } from "../ports.js";
import type { Channel, OutboxMessage } from "../types.js";
import { createSenderRouter, regionOf, routeKey, routeKeyChannel } from "./sender-router.js";

const sender = (id: string, channel: Channel = "sms"): MessageSender => ({
  id,
  channel,
  send: async () => ({}),
});

const message = (channel: Channel, to: string): OutboxMessage => ({
  id: "msg_1",
  appId: "shop",
  verificationId: "vf_1",
  channel,
  to,
  purpose: "sign_in",
  locale: "en",
  sealedCode: "",
  createdAtMs: 0,
  deliverBeforeMs: 600_000,
  attempts: 1,
});

const [twilio, tencent, gateway, acmeSmtp, smtp] = [
  sender("twilio"),
  sender("tencent"),
  sender("gateway"),
  sender("acme-smtp", "email"),
  sender("smtp", "email"),
];

const route = createSenderRouter(
  new Map([
    ["sms", [twilio, gateway]],
    ["sms:CN", [tencent, twilio]],
    ["acme/sms", [gateway]],
    ["acme/email", [acmeSmtp]],
    ["email", [smtp]],
  ]),
);
const ids = (senders: MessageSender[]) => senders.map((each) => each.id);

describe("createSenderRouter", () => {
  it("routes by channel, then destination country, keeping the configured order", () => {
    const shop = newApp({ id: "shop" });
    expect(ids(route(message("sms", "+14155550100"), shop))).toEqual(["twilio", "gateway"]);
    expect(ids(route(message("sms", "+8613800138000"), shop))).toEqual(["tencent", "twilio"]);
    expect(ids(route(message("email", "ann@example.com"), shop))).toEqual(["smtp"]);
  });

  it("lets an app's own route win over the global ones, for every country", () => {
    const acme = newApp({ id: "acme" });
    expect(ids(route(message("sms", "+8613800138000"), acme))).toEqual(["gateway"]);
    expect(ids(route(message("email", "ann@example.com"), acme))).toEqual(["acme-smtp"]);
  });

  it("answers no provider for a channel without a route", () => {
    const only = createSenderRouter(new Map([["email", [smtp]]]));
    expect(only(message("sms", "+14155550100"), newApp({ id: "shop" }))).toEqual([]);
  });
});

describe("routeKey and regionOf", () => {
  it("spell route keys as the config does", () => {
    expect(routeKey(undefined, "sms")).toBe("sms");
    expect(routeKey("acme", "sms", "CN")).toBe("acme/sms:CN");
  });

  it("find the region of an E.164 number", () => {
    expect(regionOf("+8613800138000")).toBe("CN");
    expect(regionOf("+14155550100")).toBe("US");
    expect(regionOf("+442071838750")).toBe("GB");
  });
});

describe("routeKeyChannel", () => {
  it("reads the channel from the key's last segment, not from the app id", () => {
    expect(routeKeyChannel("email-team/sms")).toBe("sms");
    expect(routeKeyChannel("sms-team/email")).toBe("email");
    expect(routeKeyChannel("email-team/sms:CN")).toBe("sms");
    expect(routeKeyChannel("email")).toBe("email");
    expect(routeKeyChannel("acme/fax")).toBeUndefined();
  });
});
