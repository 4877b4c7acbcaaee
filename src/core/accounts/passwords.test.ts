import { scryptSync } from "node:crypto";
import { describe, expect, it } from "vitest";
import { OtpError } from "../errors.js";
import { hashPassword, needsRehash, verifyPassword } from "./passwords.js";

describe("verifyPassword", () => {
  it("matches the password a hash was made of, and no other", async () => {
    const stored = await hashPassword("correct horse");
    expect(await verifyPassword("correct horse", stored)).toBe(true);
    expect(await verifyPassword("wrong horse", stored)).toBe(false);
  });

  // Regression: the first bound took half the memory scrypt may use here, so imported hashes
  // such as N=2^15 with r=12 (48 MiB) stopped matching their passwords.
  it.each([
    [32_768, 12],
    [65_536, 6],
  ])("reads a hash of N=%i, r=%i, within the memory scrypt may use", async (N, r) => {
    const { scryptSync, randomBytes } = await import("node:crypto");
    const salt = randomBytes(16);
    const key = scryptSync("pw", salt, 32, { N, r, p: 1, maxmem: 64 * 1024 * 1024 });
    const stored = `scrypt$${N}$${r}$1$${salt.toString("base64url")}$${key.toString("base64url")}`;
    expect(await verifyPassword("pw", stored)).toBe(true);
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

describe("needsRehash", () => {
  const salt = Buffer.alloc(16, 7).toString("base64url");
  const key = (bytes: number) => Buffer.alloc(bytes, 9).toString("base64url");

  it("asks for none of a hash made by this build", async () => {
    expect(needsRehash(await hashPassword("pw"))).toBe(false);
    expect(needsRehash(`scrypt$32768$8$1$${salt}$${key(32)}`)).toBe(false);
  });

  it.each([
    ["a smaller N", `scrypt$1024$8$1$${salt}$${key(32)}`],
    ["a smaller r", `scrypt$32768$4$1$${salt}$${key(32)}`],
    ["a shorter key", `scrypt$32768$8$1$${salt}$${key(16)}`],
  ])("asks for one of a hash with %s: less work to guess against", (_, stored) => {
    expect(needsRehash(stored)).toBe(true);
  });

  // Raising a stronger import's hash down to this build's parameters would weaken it.
  it.each([
    ["a larger N at a smaller r (the same work)", `scrypt$65536$4$1$${salt}$${key(32)}`],
    ["a larger r", `scrypt$32768$12$1$${salt}$${key(32)}`],
    ["a larger p", `scrypt$32768$8$3$${salt}$${key(32)}`],
    ["a longer key", `scrypt$32768$8$1$${salt}$${key(64)}`],
  ])("asks for none of a hash with %s", (_, stored) => {
    expect(needsRehash(stored)).toBe(false);
  });

  it("asks for none of a hash it cannot read, which matches no password", () => {
    expect(needsRehash(`scrypt$30000$8$1$${salt}$${key(32)}`)).toBe(false);
    expect(needsRehash("")).toBe(false);
  });
});

// Regression: every hash ran at once on libuv's four threads, so one client's flood of logins held
// up everyone's, and the DNS look-ups and file I/O that share those threads. @see .scratch/rev-crypto
describe("the line of password hashes", () => {
  it("refuses a comparison past 2 running and 32 waiting, makes a new password's hash wait, and runs the rest", async () => {
    // a cheap hash (scrypt's smallest N this build reads), so the line moves fast
    const salt = Buffer.from("salt-for-the-line");
    const key = scryptSync("pw", salt, 32, { N: 1_024, r: 8, p: 1 });
    const stored = `scrypt$1024$8$1$${salt.toString("base64url")}$${key.toString("base64url")}`;

    const comparisons = Array.from({ length: 37 }, (_, i) => verifyPassword(i % 2 ? "pw" : "no", stored));
    const newHash = hashPassword("set while the line is full");
    const outcomes = await Promise.allSettled(comparisons);

    const refused = outcomes.flatMap((outcome) => (outcome.status === "rejected" ? [outcome.reason] : []));
    expect(refused).toHaveLength(3);
    for (const reason of refused) {
      expect(reason).toBeInstanceOf(OtpError);
      expect(reason).toMatchObject({
        code: "RATE_LIMITED",
        details: { retryAfterSeconds: 1, rule: "password_hashes_busy" },
      });
    }
    // the first 34 were compared, and rightly
    expect(outcomes.slice(0, 34).map((outcome) => outcome.status === "fulfilled" && outcome.value)).toEqual(
      Array.from({ length: 34 }, (_, i) => i % 2 === 1),
    );
    expect(await verifyPassword("set while the line is full", await newHash)).toBe(true);
    // the line emptied: a comparison runs again
    expect(await verifyPassword("pw", stored)).toBe(true);
  });
});
