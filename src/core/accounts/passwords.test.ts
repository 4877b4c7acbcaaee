import { describe, expect, it } from "vitest";
import { hashPassword, verifyPassword } from "./passwords.js";

describe("verifyPassword", () => {
  it("matches the password a hash was made of, and no other", async () => {
    const stored = await hashPassword("correct horse");
    expect(await verifyPassword("correct horse", stored)).toBe(true);
    expect(await verifyPassword("wrong horse", stored)).toBe(false);
  });

  it("reads a hash made with other parameters it can run (raised or imported later)", async () => {
    // scrypt N=2^14, r=8, p=1 of "pw" with this salt, as another build or an import stores it
    const stored = await hashPassword("pw");
    const [, , , , salt] = stored.split("$");
    const { scryptSync } = await import("node:crypto");
    const key = scryptSync("pw", Buffer.from(salt as string, "base64url"), 32, { N: 16_384, r: 8, p: 1 });
    expect(await verifyPassword("pw", `scrypt$16384$8$1$${salt}$${key.toString("base64url")}`)).toBe(true);
  });

  // Regression: a hash field that decodes to no bytes made scrypt derive an empty key, equal to
  // the empty expected one, so every password passed; unreadable parameters made scrypt throw, and
  // the login answered 500.
  it.each([
    ["an empty hash field", "scrypt$32768$8$1$c2FsdHNhbHQxMjM0NTY3OA$-"],
    ["a hash field of one character", "scrypt$32768$8$1$c2FsdHNhbHQxMjM0NTY3OA$A"],
    ["a short key", "scrypt$32768$8$1$c2FsdHNhbHQxMjM0NTY3OA$AAAA"],
    ["a salt of no bytes", "scrypt$32768$8$1$$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"],
    [
      "an N that is no number",
      "scrypt$abc$8$1$c2FsdHNhbHQxMjM0NTY3OA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ],
    [
      "an N that is no power of two",
      "scrypt$30000$8$1$c2FsdHNhbHQxMjM0NTY3OA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ],
    [
      "an N past the memory bound",
      "scrypt$1048576$8$1$c2FsdHNhbHQxMjM0NTY3OA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ],
    ["a tiny N", "scrypt$2$8$1$c2FsdHNhbHQxMjM0NTY3OA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"],
    ["another scheme", "bcrypt$32768$8$1$c2FsdHNhbHQxMjM0NTY3OA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"],
    [
      "an extra field",
      "scrypt$32768$8$1$c2FsdHNhbHQxMjM0NTY3OA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA$x",
    ],
    ["nothing", ""],
  ])("matches no password with %s, and never throws", async (_, stored) => {
    await expect(verifyPassword("totally-wrong", stored)).resolves.toBe(false);
    await expect(verifyPassword("", stored)).resolves.toBe(false);
  });
});
