import { createCipheriv, createHash, hkdfSync } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  formatVerificationId,
  newVerificationId,
  parseVerificationId,
  VERIFICATION_ID_PREFIX,
} from "./ids.js";
import { CodeSecrets, generateNumericCode, outboxSealContext } from "./secrets.js";

const A = "secret-a-0123456789abcdef";
const B = "secret-b-0123456789abcdef";

describe("generateNumericCode", () => {
  it.each([4, 5, 6, 7, 8, 9, 10])("draws %i ASCII digits", (length) => {
    for (let i = 0; i < 200; i++)
      expect(generateNumericCode(length)).toMatch(new RegExp(`^[0-9]{${length}}$`));
  });

  it("draws leading zeros as often as any other first digit", () => {
    // 20,000 draws: each first digit is expected 2,000 times (sd ≈ 42). A band of ±400 (over 9 sd)
    // never fails by chance, yet catches a generator that never or rarely starts with 0.
    const firstDigits = new Array<number>(10).fill(0);
    for (let i = 0; i < 20_000; i++) {
      const digit = Number(generateNumericCode(6)[0]);
      firstDigits[digit] = (firstDigits[digit] ?? 0) + 1;
    }
    for (const count of firstDigits) {
      expect(count).toBeGreaterThan(1_600);
      expect(count).toBeLessThan(2_400);
    }
  });

  it("spreads every position evenly over the ten digits", () => {
    const counts = Array.from({ length: 4 }, () => new Array<number>(10).fill(0));
    for (let i = 0; i < 20_000; i++) {
      const code = generateNumericCode(4);
      for (let position = 0; position < 4; position++) {
        const row = counts[position] as number[];
        const digit = Number(code[position]);
        row[digit] = (row[digit] ?? 0) + 1;
      }
    }
    for (const row of counts) for (const count of row) expect(Math.abs(count - 2_000)).toBeLessThan(400);
  });

  it("rarely repeats a 6-digit code", () => {
    const seen = new Set<string>();
    for (let i = 0; i < 1_000; i++) seen.add(generateNumericCode(6));
    // birthday bound: about 0.5 expected collisions among 1,000 draws of 10^6
    expect(seen.size).toBeGreaterThan(990);
  });
});

describe("CodeSecrets: hashing", () => {
  it("matches the code it hashed and no other", () => {
    const secrets = new CodeSecrets([A]);
    const hash = secrets.hashCode("vf_1", "042917");
    expect(hash).toMatch(/^[0-9a-f]{64}$/);
    expect(secrets.codeMatches("vf_1", "042917", hash)).toBe(true);
    expect(secrets.codeMatches("vf_1", "042918", hash)).toBe(false);
    expect(secrets.codeMatches("vf_1", "42917", hash)).toBe(false);
  });

  it("hashes as it always has: codes at rest in an existing store still verify", () => {
    // HMAC-SHA256 of "vf_1\0042917" under the HKDF-derived code key of A, computed when the
    // hashing changed shape (one update of the joined text instead of three): same bytes, same hash.
    const hash = "e773cfe5e0a5a5611ed31a53a9ec552f95cbcd009cd0bbff0300de5d20e947af";
    expect(new CodeSecrets([A]).hashCode("vf_1", "042917")).toBe(hash);
    expect(new CodeSecrets([B, A]).codeMatches("vf_1", "042917", hash)).toBe(true);
  });

  it("binds the hash to the verification id, so equal codes never share a hash", () => {
    const secrets = new CodeSecrets([A]);
    const hash = secrets.hashCode("vf_1", "042917");
    expect(secrets.hashCode("vf_2", "042917")).not.toBe(hash);
    expect(secrets.codeMatches("vf_2", "042917", hash)).toBe(false);
  });

  it("is keyed: another secret gives another hash", () => {
    expect(new CodeSecrets([A]).hashCode("vf_1", "042917")).not.toBe(
      new CodeSecrets([B]).hashCode("vf_1", "042917"),
    );
  });

  it("hashes under the newest secret and still matches hashes made under older ones", () => {
    const old = new CodeSecrets([A]).hashCode("vf_1", "042917");
    const rotated = new CodeSecrets([B, A]);
    expect(rotated.codeMatches("vf_1", "042917", old)).toBe(true);
    expect(rotated.hashCode("vf_1", "042917")).toBe(new CodeSecrets([B]).hashCode("vf_1", "042917"));
    expect(new CodeSecrets([B]).codeMatches("vf_1", "042917", old)).toBe(false);
  });

  it("treats a malformed stored hash as no match instead of throwing", () => {
    const secrets = new CodeSecrets([A]);
    expect(secrets.codeMatches("vf_1", "042917", "")).toBe(false);
    expect(secrets.codeMatches("vf_1", "042917", "zz")).toBe(false);
    expect(secrets.codeMatches("vf_1", "042917", "ab".repeat(16))).toBe(false);
  });

  it("refuses to start without a secret", () => {
    expect(() => new CodeSecrets([])).toThrow();
  });
});

describe("CodeSecrets: slot tags", () => {
  const SLOT = "sms:+8613812345678:sign_in";

  it("tags a slot the same way every time, and each app and slot differently", () => {
    const secrets = new CodeSecrets([A]);
    const [tag] = secrets.slotTags("default", SLOT);
    expect(tag).toMatch(/^[\w-]{12}$/);
    expect(secrets.slotTags("default", SLOT)).toEqual([tag]);
    expect(new CodeSecrets([A]).slotTags("default", SLOT)).toEqual([tag]);
    expect(secrets.slotTags("shop", SLOT)).not.toEqual([tag]);
    expect(secrets.slotTags("default", "sms:+8613812345679:sign_in")).not.toEqual([tag]);
    expect(secrets.slotTags("default", "sms:+8613812345678:sign_up")).not.toEqual([tag]);
  });

  it("tags as it always has: ids of codes at rest keep pointing at their slot", () => {
    // The first 9 bytes of HMAC-SHA256("default\0" + SLOT) under the HKDF-derived tag key of A,
    // computed when tags were cut from the digest's bytes rather than from its base64url text.
    expect(new CodeSecrets([A]).slotTags("default", SLOT)).toEqual(["BQi8xxLItl-z"]);
  });

  it("is keyed: without the secret a tag cannot be recomputed from the phone number", () => {
    const [tag] = new CodeSecrets([A]).slotTags("default", SLOT);
    expect(new CodeSecrets([B]).slotTags("default", SLOT)).not.toEqual([tag]);
    // not a plain hash of what it tags
    for (const input of [SLOT, `default\0${SLOT}`, "+8613812345678"]) {
      const plain = createHash("sha256").update(input).digest().subarray(0, 9).toString("base64url");
      expect(plain).not.toBe(tag);
    }
  });

  it("gives the tag under every secret, newest first, so codes from before a rotation are found", () => {
    const [old] = new CodeSecrets([A]).slotTags("default", SLOT);
    const [fresh] = new CodeSecrets([B]).slotTags("default", SLOT);
    expect(new CodeSecrets([B, A]).slotTags("default", SLOT)).toEqual([fresh, old]);
  });

  it("mints verification ids that carry the time, then the tag, then 144 random bits", () => {
    const [tag = ""] = new CodeSecrets([A]).slotTags("default", SLOT);
    const now = 1_700_000_000_000;
    const ids = Array.from({ length: 1_000 }, () => newVerificationId(tag, now));
    expect(new Set(ids).size).toBe(1_000);
    for (const id of ids.slice(0, 10)) {
      expect(id).toMatch(/^vf_[0-9a-z]{9}[\w-]{36}$/);
      expect(id.startsWith(`${VERIFICATION_ID_PREFIX}${now.toString(36).padStart(9, "0")}${tag}`)).toBe(true);
      const parts = parseVerificationId(id);
      expect(parts?.slotTag).toBe(tag);
      expect(parts?.stamp).toHaveLength(27);
      expect(formatVerificationId(tag, parts?.stamp ?? Buffer.alloc(0))).toBe(id);
    }
    // later ids sort after earlier ones, whatever their slot
    const [other = ""] = new CodeSecrets([B]).slotTags("default", SLOT);
    expect(newVerificationId(other, now) < newVerificationId(tag, now + 1)).toBe(true);
  });

  it("parses only ids of that shape", () => {
    const time = "0000000ab";
    for (const id of [
      "",
      "vf_1",
      "vf_AAAAAAAAAAAAAAAAAAAAAA",
      `vf_${"A".repeat(36)}`, // the shape before ids carried their time
      `vf_${time}${"A".repeat(37)}`,
      `vf_${"A".repeat(9)}${"A".repeat(36)}`, // the time is base36, lower case
      `vx_${time}${"A".repeat(36)}`,
    ]) {
      expect(parseVerificationId(id)).toBeNull();
    }
    expect(parseVerificationId(`vf_${time}${"A".repeat(36)}`)).toEqual({
      slotTag: "A".repeat(12),
      stamp: Buffer.concat([Buffer.from(time, "latin1"), Buffer.alloc(18)]),
    });
  });
});

describe("CodeSecrets: sealing outbox payloads", () => {
  const context = outboxSealContext({
    appId: "default",
    verificationId: "vf_1",
    channel: "email",
    to: "ann@example.com",
    purpose: "sign_in",
  });

  it("opens what it sealed, and the sealed form does not contain the code", () => {
    const secrets = new CodeSecrets([A]);
    const sealed = secrets.seal("0429178888", context);
    expect(sealed).not.toContain("0429178888");
    expect(Buffer.from(sealed.slice(3), "base64").toString("latin1")).not.toContain("0429178888");
    expect(secrets.open(sealed, context)).toBe("0429178888");
  });

  it("seals the same code differently each time (random IV)", () => {
    const secrets = new CodeSecrets([A]);
    expect(secrets.seal("042917", context)).not.toBe(secrets.seal("042917", context));
  });

  it("opens a payload sealed under an older secret after a rotation", () => {
    const sealed = new CodeSecrets([A]).seal("042917", context);
    expect(new CodeSecrets([B, A]).open(sealed, context)).toBe("042917");
    expect(new CodeSecrets([B]).open(sealed, context)).toBeNull();
  });

  it("refuses a tampered or truncated payload", () => {
    const secrets = new CodeSecrets([A]);
    const sealed = secrets.seal("042917", context);
    const raw = Buffer.from(sealed.slice(3), "base64");
    raw[raw.length - 1] = (raw[raw.length - 1] ?? 0) ^ 1;
    expect(secrets.open(`v2.${raw.toString("base64")}`, context)).toBeNull();
    expect(secrets.open(`v2.${raw.subarray(0, 20).toString("base64")}`, context)).toBeNull();
    expect(secrets.open("", context)).toBeNull();
    // stripped of its mark, it is judged as an older build's seal, without the context: no good
    expect(secrets.open(sealed.slice(3), context)).toBeNull();
  });

  // Whoever can write the database but not read the secret must not be able to redirect a queued
  // code: by editing its row's recipient, or by moving its seal into a row of their own.
  it("opens a payload only beside the row it was sealed for", () => {
    const secrets = new CodeSecrets([A]);
    const sealed = secrets.seal("042917", context);
    const row = { appId: "default", verificationId: "vf_1", channel: "email", purpose: "sign_in" } as const;
    expect(secrets.open(sealed, outboxSealContext({ ...row, to: "mallory@example.com" }))).toBeNull();
    expect(
      secrets.open(sealed, outboxSealContext({ ...row, verificationId: "vf_2", to: "ann@example.com" })),
    ).toBeNull();
    expect(
      secrets.open(sealed, outboxSealContext({ ...row, appId: "other", to: "ann@example.com" })),
    ).toBeNull();
    expect(
      secrets.open(sealed, outboxSealContext({ ...row, purpose: "reset_password", to: "ann@example.com" })),
    ).toBeNull();
  });

  // Rows an older build queued carry seals without a context; they are delivered after an upgrade.
  it("opens a payload an older build sealed, without a context", () => {
    const key = Buffer.from(hkdfSync("sha256", A, "verifyd", "verifyd outbox seal", 32));
    const iv = Buffer.alloc(12, 7);
    const cipher = createCipheriv("aes-256-gcm", key, iv);
    const body = Buffer.concat([cipher.update("042917", "utf8"), cipher.final()]);
    const legacy = Buffer.concat([iv, cipher.getAuthTag(), body]).toString("base64");
    expect(new CodeSecrets([A]).open(legacy, context)).toBe("042917");
  });
});
