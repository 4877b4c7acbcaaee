import { afterEach, expect, it, vi } from "vitest";
import { otpError } from "../../../test/fakes/otp-error.js";
import { createTestEngine, type TestEngine } from "../../../test/fakes/test-engine.js";

// Counts the password hashes a sign-up makes (each costs 50-100 ms of scrypt), the rest as it is.
const hashes = vi.hoisted(() => ({ count: 0 }));
vi.mock("./passwords.js", async (importOriginal) => {
  const actual = await importOriginal<typeof import("./passwords.js")>();
  return {
    ...actual,
    hashPassword: (password: string) => {
      hashes.count += 1;
      return actual.hashPassword(password);
    },
  };
});

let t: TestEngine;
afterEach(() => t?.close());

// Regression: the fix that removes a refused sign-up's account hashed the password before the token
// was read, so every made-up token cost the server a hash. @see .scratch/final (c)
it("hashes no password for a sign-up whose token is made up, and one for a good token", async () => {
  t = await createTestEngine();
  const app = await t.app();
  const signUp = (token: string) =>
    t.engine.signUp({
      app,
      proof: { token: { app, token, tokenField: "verification_token" } },
      password: "secret",
      fields: { contact: "email" },
    });
  const refused = await otpError(signUp("vt_made_up_0123456789abcdef0123456789"));
  expect(refused.code).toBe("TOKEN_INVALID");
  expect(hashes.count).toBe(0);

  await t.engine.sendCode({ app, channel: "email", to: "ann@example.com", purpose: "sign_up", rule: "any" });
  await t.deliverAll();
  const { token } = await t.engine.checkCode({
    app,
    target: { channel: "email", to: "ann@example.com", purpose: "sign_up", toField: "email" },
    code: t.lastCode("ann@example.com"),
    codeField: "code",
  });
  await signUp(token as string);
  expect(hashes.count).toBe(1);
});
