import { afterEach, describe, expect, it } from "vitest";
import { otpError } from "../../../test/fakes/otp-error.js";
import { createTestEngine, type TestEngine } from "../../../test/fakes/test-engine.js";
import { OtpError } from "../errors.js";
import { sha256Hex } from "../ids.js";
import type { Purpose } from "../types.js";

let t: TestEngine;
afterEach(() => t?.close());

async function approvedToken(purpose: Purpose = "sign_in", tokenPurposes?: Purpose[]): Promise<string> {
  const app = await t.app();
  const sent = await t.engine.sendCode({
    app,
    channel: "email",
    to: "ann@example.com",
    purpose,
    rule: "any",
    ...(tokenPurposes ? { tokenPurposes } : {}),
  });
  await t.deliverAll();
  const checked = await t.engine.checkCode({
    app,
    target: { id: sent.record.id },
    code: t.lastCode("ann@example.com"),
  });
  return checked.token as string;
}

async function redeem(
  token: string,
  purposes?: Purpose[],
  recipient?: { channel: "email" | "sms"; address: string },
) {
  return t.engine.redeemToken({ app: await t.app(), token, purposes, recipient });
}

describe("redeemToken", () => {
  it("tells what was verified, once", async () => {
    t = await createTestEngine();
    const token = await approvedToken();
    expect(await redeem(token)).toMatchObject({
      appId: "default",
      channel: "email",
      to: "ann@example.com",
      purposes: ["sign_in"],
    });
    const again = await otpError(redeem(token));
    expect(again.code).toBe("TOKEN_INVALID");
    expect(again.details.field).toBe("token");
  });

  it("leaves the token unspent when the step's own check refuses it", async () => {
    t = await createTestEngine();
    const token = await approvedToken();
    const app = await t.app();
    const refusal = await otpError(
      t.engine.redeemToken({
        app,
        token,
        beforeSpending: async (verified) => {
          expect(verified.to).toBe("ann@example.com");
          throw new OtpError("ACCOUNT_NOT_FOUND");
        },
      }),
    );
    expect(refusal.code).toBe("ACCOUNT_NOT_FOUND");
    expect(await redeem(token)).toMatchObject({ to: "ann@example.com" });
  });

  it("redeems for exactly one of many concurrent callers", async () => {
    t = await createTestEngine();
    const token = await approvedToken();
    const outcomes = await Promise.allSettled(Array.from({ length: 20 }, () => redeem(token)));
    expect(outcomes.filter((outcome) => outcome.status === "fulfilled")).toHaveLength(1);
  });

  it("expires 600 s after approval", async () => {
    t = await createTestEngine();
    const token = await approvedToken();
    t.clock.advanceSeconds(599);
    expect((await redeem(token)).to).toBe("ann@example.com");
    const late = await approvedToken("reset_password");
    t.clock.advanceSeconds(600);
    expect((await otpError(redeem(late))).code).toBe("TOKEN_INVALID");
  });

  it("refuses another purpose without spending the token", async () => {
    t = await createTestEngine();
    const token = await approvedToken("sign_in");
    expect((await otpError(redeem(token, ["sign_up"]))).code).toBe("TOKEN_INVALID");
    expect((await redeem(token, ["sign_up", "sign_in"])).purposes).toEqual(["sign_in"]);
  });

  it("redeems for every purpose the send allowed (CloudBase's log-in-or-register)", async () => {
    t = await createTestEngine();
    const token = await approvedToken("sign_in", ["sign_in", "sign_up"]);
    expect((await redeem(token, ["sign_up"])).purposes).toEqual(["sign_in", "sign_up"]);
  });

  it("refuses another recipient without spending the token", async () => {
    t = await createTestEngine();
    const token = await approvedToken();
    expect(
      (await otpError(redeem(token, undefined, { channel: "email", address: "bob@example.com" }))).code,
    ).toBe("TOKEN_INVALID");
    expect(
      (await otpError(redeem(token, undefined, { channel: "sms", address: "ann@example.com" }))).code,
    ).toBe("TOKEN_INVALID");
    expect((await redeem(token, undefined, { channel: "email", address: "ann@example.com" })).to).toBe(
      "ann@example.com",
    );
  });

  it("refuses a token of another app", async () => {
    t = await createTestEngine();
    const token = await approvedToken();
    const other = { ...(await t.app()), id: "other" };
    expect((await otpError(t.engine.redeemToken({ app: other, token }))).code).toBe("TOKEN_INVALID");
    expect((await redeem(token)).appId).toBe("default");
  });

  it("refuses an unknown token naming the caller's field", async () => {
    t = await createTestEngine();
    const error = await otpError(
      t.engine.redeemToken({ app: await t.app(), token: "vt_nope", tokenField: "verifyToken" }),
    );
    expect(error.code).toBe("TOKEN_INVALID");
    expect(error.details.field).toBe("verifyToken");
  });

  it("stores only the token's hash, after its time (no secret) so keys sort by time", async () => {
    t = await createTestEngine();
    const token = await approvedToken();
    const rows = t.backend.db.prepare("SELECT token_hash FROM tokens").all() as { token_hash: string }[];
    expect(rows).toHaveLength(1);
    expect(rows[0]?.token_hash).toBe(`${token.slice(3, 12)}${sha256Hex(token)}`);
    expect(rows[0]?.token_hash).not.toContain(token.slice(12));
  });
});
