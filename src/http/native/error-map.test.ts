import { afterEach, describe, expect, it } from "vitest";
import { createTestServer, type TestServer } from "../../../test/harness.js";
import { NATIVE_ERROR_STATUS } from "./error-map.js";

let t: TestServer | undefined;
afterEach(async () => {
  await t?.close();
  t = undefined;
});

describe("native error statuses", () => {
  // DESIGN.md "Native API": 422 is a wrong code (with attempts_remaining), nothing else.
  it("answers 422 for a wrong code only", () => {
    const unprocessable = Object.entries(NATIVE_ERROR_STATUS).filter(([, status]) => status === 422);
    expect(unprocessable.map(([code]) => code)).toEqual(["CODE_INVALID"]);
  });

  // Regression: a missing template answered 422, the wrong code's status, for what is the
  // server's configuration fault. The config file refuses a default locale without templates, and
  // a locale with templates for other purposes falls back to the default: only an app stored with
  // such a default locale (by an older build) has none to send. @see core review 7
  it("answers a missing template as a 500 server error", async () => {
    t = await createTestServer({
      apps: [
        { id: "default", templates: { sign_up: { fr: { subject: "{app}", text: "Votre code {code}" } } } },
      ],
    });
    const stored = await t.engine.apps.stored("default");
    await t.engine.apps.save({ ...stored!, defaultLocale: "fr" });
    const sent = await t.fastify.inject({
      method: "POST",
      url: "/v1/verifications",
      payload: { channel: "email", to: "ann@example.com", purpose: "sign_in", locale: "fr" },
    });
    expect(sent.statusCode).toBe(500);
    expect(sent.json()).toMatchObject({ status: 500, code: "TEMPLATE_MISSING" });
  });
});
