import { afterEach, describe, expect, it } from "vitest";
import { createTestServer, type TestServer } from "../../../../test/harness.js";
import { FRESNS_CODE_MESSAGES } from "./code-messages.js";

let t: TestServer;
afterEach(async () => {
  await t?.close();
});

// Regression: an account with an email and a phone, asking to bind one another account owns
// (useType 3), was told it has one (34401/34402); Fresns checks "taken" first (COMPANION-APIS.md
// 1.1, step 7 before step 9). @see .scratch/accounts P3
describe("send-verify-code useType 3: Fresns's order of refusals", () => {
  it("answers a contact another account owns with 34205/34206 though the account has one", async () => {
    t = await createTestServer();
    const app = (await t.engine.apps.byId("default"))!;
    await t.engine.accounts.create({ app, email: "bob@example.com", phone: "+8613800138001" });
    const ann = await t.engine.accounts.create({ app, email: "ann@example.com", phone: "+8613800138000" });
    const session = await t.engine.accounts.createSession(app, ann, 3600, "fresns");
    const headers = { "x-fresns-aid": ann.id, "x-fresns-aid-token": session.token };
    const send = (payload: Record<string, unknown>) =>
      t.fastify.inject({ method: "POST", url: "/api/v2/common/send-verify-code", payload, headers });
    const bind = { useType: 3, templateId: 4 };
    const answers = [
      [await send({ type: "email", ...bind, account: "bob@example.com" }), 34205],
      [await send({ type: "sms", ...bind, account: "13800138001", countryCode: 86 }), 34206],
      // a contact no account has: the account already has one
      [await send({ type: "email", ...bind, account: "new@example.com" }), 34401],
    ] as const;
    for (const [response, code] of answers) {
      expect(response.json()).toEqual({ code, message: FRESNS_CODE_MESSAGES[code].en, data: null });
    }
  });
});
