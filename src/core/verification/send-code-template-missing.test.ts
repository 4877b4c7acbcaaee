import { afterEach, describe, expect, it } from "vitest";
import { otpError } from "../../../test/fakes/otp-error.js";
import { createTestEngine, type TestEngine } from "../../../test/fakes/test-engine.js";

// Regression: the refusal's internal text read "sign_in/undefined", the locale it names being the
// one not found. @see logs review 4

let t: TestEngine;
afterEach(() => t?.close());

describe("sendCode without a template in any locale it may use", () => {
  it("refuses with TEMPLATE_MISSING naming the purpose and the locale looked for", async () => {
    t = await createTestEngine();
    // A default locale without templates (the config refuses one; an app stored before could have it).
    await t.updateApp({ defaultLocale: "tlh", templates: {} });
    const error = await otpError(
      t.engine.sendCode({
        app: await t.app(),
        channel: "email",
        to: "ann@example.com",
        purpose: "sign_in",
        rule: "any",
        locale: "x-klingon",
      }),
    );
    expect(error.code).toBe("TEMPLATE_MISSING");
    expect(error.internal).toBe("no template for sign_in in tlh in app default");
  });
});
