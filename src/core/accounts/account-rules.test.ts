import { afterEach, describe, expect, it } from "vitest";
import { otpError } from "../../../test/fakes/otp-error.js";
import { createTestEngine, type TestEngine } from "../../../test/fakes/test-engine.js";
import type { AccountRule, Channel } from "../types.js";
import { applyAccountRule } from "./account-rules.js";

let t: TestEngine;
afterEach(() => t?.close());

function apply(rule: AccountRule, channel: Channel, to: string | undefined, accountId: string) {
  return applyAccountRule(t.engine.deps.accounts, {
    appId: "default",
    rule,
    channel,
    recipient: to === undefined ? undefined : { channel, address: to },
    accountId,
  });
}

describe("applyAccountRule: logged_in_contact_blank", () => {
  // Regression: an account with an email that asked to bind one another account owns was told it
  // has one (Fresns 34401), where Fresns tells the address taken first (34205, COMPANION-APIS.md
  // 1.1 step 7 before step 9). @see .scratch/accounts P3
  it("tells a contact another account owns before the account's own contact", async () => {
    t = await createTestEngine();
    const app = await t.app();
    await t.engine.accounts.create({ app, email: "bob@example.com", phone: "+8613800138001" });
    const full = await t.engine.accounts.create({ app, email: "ann@example.com", phone: "+8613800138000" });
    const rule = "logged_in_contact_blank";
    expect((await otpError(apply(rule, "email", "bob@example.com", full.id))).code).toBe("ACCOUNT_EXISTS");
    expect((await otpError(apply(rule, "sms", "+8613800138001", full.id))).code).toBe("ACCOUNT_EXISTS");
    // its own contact is owned too, as Fresns's look-up finds it
    expect((await otpError(apply(rule, "email", "ann@example.com", full.id))).code).toBe("ACCOUNT_EXISTS");
    // a free contact: the account already has one
    expect((await otpError(apply(rule, "email", "new@example.com", full.id))).code).toBe(
      "CONTACT_ALREADY_SET",
    );
    expect((await otpError(apply(rule, "sms", "+8613800138009", full.id))).code).toBe("CONTACT_ALREADY_SET");
  });
});
