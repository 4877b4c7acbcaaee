/**
 * Each face's verify route judges the kind of challenge that face draws: CloudBase images, IDaaS
 * sliders (the native API draws and judges both).
 */
import type { LightMyRequestResponse } from "fastify";
import { afterEach, describe, expect, it } from "vitest";
import { idaasDeviceHeaders } from "../fakes/idaas-device.js";
import { createTestServer, type TestServer } from "../harness.js";

const IDAAS = idaasDeviceHeaders("default");

let t: TestServer | undefined;
afterEach(async () => {
  await t?.close();
  t = undefined;
});

function call(method: "GET" | "POST", url: string, payload?: object, headers: Record<string, string> = {}) {
  if (!t) throw new Error("no server");
  return t.fastify.inject({
    method,
    url,
    headers,
    ...(payload ? { payload: payload as Record<string, unknown> } : {}),
  });
}

const tokenOf = (drawn: LightMyRequestResponse) => drawn.json().token as string;
const answerOf = async (token: string) => (await call("GET", `/v1/dev/captcha/${token}`)).json().answer;

describe("a verify route given another face's kind of challenge", () => {
  // Regression: CloudBase's image route judged an IDaaS slider (its x as the key) and gave an
  // unbound pass, and IDaaS's slider route judged an image (its text as point_json).
  // @see captcha review 2 4
  it("refuses it as an unknown challenge, in the face's shape", async () => {
    t = await createTestServer();
    const slider = tokenOf(await call("GET", "/api/v2/sdk/captcha", undefined, IDAAS));
    const { x } = await answerOf(slider);
    const byCloudbase = await call("POST", "/auth/v1/captcha/data/verify", { token: slider, key: String(x) });
    expect(byCloudbase.statusCode, byCloudbase.body).toBe(400);
    expect(byCloudbase.json()).toMatchObject({ error: "captcha_invalid", error_code: 4027 });

    const image = tokenOf(await call("POST", "/auth/v1/captcha/data", {}));
    const byIdaas = await call(
      "POST",
      "/api/v2/sdk/captcha/verify",
      { token: image, point_json: await answerOf(image), sender: "ann@example.com" },
      IDAAS,
    );
    expect(byIdaas.statusCode, byIdaas.body).toBe(400);
    expect(byIdaas.json().error_code).toBe("IDAAS.SDK.CAPTCHA.0002");

    // Each face still judges its own kind, and the native API both.
    const own = tokenOf(await call("POST", "/auth/v1/captcha/data", {}));
    const solved = await call("POST", "/auth/v1/captcha/data/verify", {
      token: own,
      key: await answerOf(own),
    });
    expect(solved.statusCode, solved.body).toBe(200);
    const idaasSlider = tokenOf(await call("GET", "/api/v2/sdk/captcha", undefined, IDAAS));
    const native = await call("POST", "/v1/captcha/verify", {
      token: idaasSlider,
      answer: (await answerOf(idaasSlider)).x,
    });
    expect(native.statusCode, native.body).toBe(200);
  });
});
