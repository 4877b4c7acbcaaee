/**
 * A check by recipient (CloudBase's sign-up by code, Fresns's and IDaaS's code logins: the caller
 * names the contact and the code) answers a recipient with no pending code exactly as one whose
 * pending code was guessed wrong. Otherwise one free call, counted nowhere, would tell whether an
 * address was sent a code. (The native API checks by verification id only.) Fresns and IDaaS never
 * counted attempts in a refusal: their wrong-code cases pin that, where CloudBase's was the fix.
 */
import type { LightMyRequestResponse } from "fastify";
import { afterEach, describe, expect, it } from "vitest";
import type { Purpose } from "../../src/core/types.js";
import { createTestServer, type TestServer } from "../harness.js";

const WITH_CODE = "ann@example.com";
const WITHOUT_CODE = "bob@example.com";

let t: TestServer | undefined;
afterEach(async () => {
  await t?.close();
  t = undefined;
});

/** A server where both recipients have accounts and only WITH_CODE a pending `purpose` code; its code. */
async function serverWithCodeFor(purpose: Purpose): Promise<{ server: TestServer; code: string }> {
  const server = await createTestServer();
  t = server;
  const app = await server.engine.apps.byId("default");
  if (!app) throw new Error("no default app");
  if (purpose !== "sign_up") {
    for (const email of [WITH_CODE, WITHOUT_CODE]) await server.engine.accounts.create({ app, email });
  }
  await server.engine.sendCode({ app, channel: "email", to: WITH_CODE, purpose, rule: "any" });
  await server.deliverAll();
  const code = server.email.lastCodeFor(WITH_CODE);
  expect(code).toMatch(/^\d{6}$/);
  return { server, code: code as string };
}

const wrong = (code: string) => (code === "000000" ? "000001" : "000000");

/** IDaaS's login by email code, from the device headers its SDK sends. */
function idaasCodeLogIn(server: TestServer, email: string, code: string): Promise<LightMyRequestResponse> {
  return server.fastify.inject({
    method: "POST",
    url: "/api/v2/sdk/login/email-verify-code",
    headers: {
      "x-client-id": "default",
      "x-operating-sys-version": "windows10.1.1",
      "x-device-fingerprint": "156aysdna213sc50",
      "x-agent": "Mozilla/5.0",
    },
    payload: { email, verify_code: code },
  });
}

function expectAlike(wrongCode: LightMyRequestResponse, noCode: LightMyRequestResponse): void {
  expect(noCode.statusCode).toBe(wrongCode.statusCode);
  expect(noCode.body).toBe(wrongCode.body);
}

describe("a check by recipient tells no pending code from a wrong one on no face", () => {
  it("CloudBase: sign-up with verification_code", async () => {
    const { server, code } = await serverWithCodeFor("sign_up");
    const signUp = (email: string) =>
      server.fastify.inject({
        method: "POST",
        url: "/auth/v1/signup",
        payload: { email, verification_code: wrong(code), password: "s3cret-pass" },
      });
    const wrongCode = await signUp(WITH_CODE);
    // Before, only a real code's refusal counted its attempts: "…; 4 attempts left", where no code
    // at all was "…; request a new one".
    expect(wrongCode.json()).toMatchObject({ error: "invalid_verification_code", error_code: 4002 });
    expectAlike(wrongCode, await signUp(WITHOUT_CODE));
    // a second wrong code still says no count
    expectAlike(await signUp(WITH_CODE), await signUp(WITHOUT_CODE));
  });

  it("Fresns: login with verifyCode", async () => {
    const { server, code } = await serverWithCodeFor("sign_in");
    const logIn = (account: string) =>
      server.fastify.inject({
        method: "POST",
        url: "/api/v2/account/login",
        payload: { type: "email", account, verifyCode: wrong(code) },
      });
    const wrongCode = await logIn(WITH_CODE);
    expect(wrongCode.json()).toMatchObject({ code: 33203 });
    expectAlike(wrongCode, await logIn(WITHOUT_CODE));
  });

  it("IDaaS: login by email code", async () => {
    const { server, code } = await serverWithCodeFor("sign_in");
    const logIn = (email: string) => idaasCodeLogIn(server, email, wrong(code));
    const wrongCode = await logIn(WITH_CODE);
    expect(wrongCode.statusCode).toBe(400);
    expect(wrongCode.json().error_code, wrongCode.body).toBe("IDAAS.SDK.CAPTCHA.0007");
    expectAlike(wrongCode, await logIn(WITHOUT_CODE));
  });

  // Regression: an expired code was refused as such (CloudBase 4005, IDaaS CAPTCHA.1001) where no
  // code was a wrong one: for a day, until the code was purged, one free call told whether the
  // address had been sent a code. (Fresns answers both 33203 alike; a used code has left its slot.)
  it("CloudBase: an expired code is answered as no code at all", async () => {
    const { server, code } = await serverWithCodeFor("sign_up");
    const signUp = (email: string, verification_code: string) =>
      server.fastify.inject({
        method: "POST",
        url: "/auth/v1/signup",
        payload: { email, verification_code, password: "s3cret-pass" },
      });
    server.clock.advanceSeconds(601);
    const expired = await signUp(WITH_CODE, code);
    expect(expired.json()).toMatchObject({ error: "invalid_verification_code", error_code: 4002 });
    expectAlike(expired, await signUp(WITHOUT_CODE, code));
  });

  it("IDaaS: an expired code is answered as no code at all", async () => {
    const { server, code } = await serverWithCodeFor("sign_in");
    const logIn = (email: string) => idaasCodeLogIn(server, email, code);
    server.clock.advanceSeconds(601);
    const expired = await logIn(WITH_CODE);
    expect(expired.json().error_code, expired.body).toBe("IDAAS.SDK.CAPTCHA.0007");
    expectAlike(expired, await logIn(WITHOUT_CODE));
  });
});
