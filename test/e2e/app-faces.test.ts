import { afterEach, describe, expect, it } from "vitest";
import { captchaGap, newApp } from "../../src/core/apps/apps.js";
import { DEFAULT_ABUSE_POLICY } from "../../src/core/policy.js";
import { createTestServer, type TestServer } from "../harness.js";

/**
 * An app's `faces`: the API faces that serve it. On any other the app does not exist, so a captcha
 * one face demands (IDaaS: always) is no longer gone round through another that serves the same
 * app with a weaker policy (CloudBase: by risk; Fresns: never). @see captcha review 5
 */

const IDAAS_DEVICE = {
  "x-operating-sys-version": "windows10.1.1",
  "x-device-fingerprint": "156aysdna213sc50",
  "x-agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 13_3 like Mac OS X)",
};

let t: TestServer | undefined;
afterEach(async () => {
  await t?.close();
  t = undefined;
});

const corpOnIdaas = () =>
  createTestServer({
    apps: [
      { id: "corp", clientId: "corp-client", faces: ["idaas"] },
      { id: "default", faces: ["native"] },
    ],
  });

describe("an app served on some faces only", () => {
  it("is served on its face", async () => {
    t = await corpOnIdaas();
    const captcha = await t.fastify.inject({
      method: "GET",
      url: "/api/v2/sdk/captcha",
      headers: { ...IDAAS_DEVICE, "x-client-id": "corp-client" },
    });
    expect(captcha.statusCode).toBe(200);
    expect(captcha.json().token).toEqual(expect.any(String));
  });

  it("does not exist on CloudBase, named by client_id or as the default app", async () => {
    t = await corpOnIdaas();
    for (const url of ["/auth/v1/verification?client_id=corp-client", "/auth/v1/verification"]) {
      const send = await t.fastify.inject({
        method: "POST",
        url,
        payload: { email: "ann@example.com", target: "ANY" },
      });
      expect(send.statusCode).toBe(404);
      expect(send.json()).toMatchObject({ error: "not_found", error_code: 4017 });
    }
    await t.deliverAll();
    expect(t.email.messages).toHaveLength(0);
  });

  it("does not exist on Fresns, named by X-Fresns-App-Id or as the default app", async () => {
    t = await corpOnIdaas();
    for (const headers of [{ "x-fresns-app-id": "corp-client" }, {}]) {
      const send = await t.fastify.inject({
        method: "POST",
        url: "/api/v2/common/send-verify-code",
        headers,
        payload: { type: "email", useType: 1, templateId: 2, account: "ann@example.com" },
      });
      expect(send.statusCode).toBe(200);
      expect(send.json().code).toBe(31301);
    }
    await t.deliverAll();
    expect(t.email.messages).toHaveLength(0);
  });

  it("does not exist on IDaaS when its faces leave IDaaS out", async () => {
    t = await corpOnIdaas();
    const captcha = await t.fastify.inject({
      method: "GET",
      url: "/api/v2/sdk/captcha",
      headers: { ...IDAAS_DEVICE, "x-client-id": "default" },
    });
    expect(captcha.statusCode).toBe(400);
    expect(captcha.json().error_code).toBe("IDAAS.SDK.PARAM.0003");
  });

  it("does not exist on the native API when its faces leave it out", async () => {
    t = await createTestServer({ apps: [{ id: "default", faces: ["cloudbase"] }] });
    const send = await t.fastify.inject({
      method: "POST",
      url: "/v1/verifications",
      payload: { channel: "email", to: "ann@example.com", purpose: "sign_in" },
    });
    expect(send.statusCode).toBe(401); // the native API answers an unknown app so
    expect(send.json().code).toBe("APP_NOT_FOUND");
  });
});

describe("captchaGap (the production start's warning)", () => {
  const withCaptcha = (faces: App["faces"], captcha: Partial<App["abuse"]["captcha"]> = {}) =>
    newApp({
      id: "corp",
      faces,
      abuse: { ...DEFAULT_ABUSE_POLICY, captcha: { ...DEFAULT_ABUSE_POLICY.captcha, ...captcha } },
    });

  it("names the strictest and the weakest of the faces an app serves, when they differ", () => {
    expect(captchaGap(withCaptcha(["native", "fresns", "cloudbase", "idaas"]))).toEqual({
      strictest: "idaas (always)",
      weakest: "fresns (never)",
    });
    expect(captchaGap(withCaptcha(["idaas"]))).toBeNull();
    expect(captchaGap(withCaptcha(["native", "cloudbase"]))).toBeNull();
    expect(captchaGap(withCaptcha(["native", "idaas"], { native: "always" }))).toBeNull();
    expect(captchaGap({ ...withCaptcha(["fresns", "idaas"]), disabled: true })).toBeNull();
  });
});

type App = ReturnType<typeof newApp>;
