import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { CaptchaStore, StoredChallenge } from "../../core/ports.js";
import { createGroupCommit } from "./group-commit.js";
import { createSqliteCaptchaStore } from "./sqlite-captcha-store.js";
import { openSqliteDatabase, type SqliteDatabase } from "./sqlite-database.js";

const NOW = Date.UTC(2026, 0, 1, 12, 0, 0);

let db: SqliteDatabase;
let store: CaptchaStore;
beforeEach(() => {
  db = openSqliteDatabase({ path: ":memory:" });
  store = createSqliteCaptchaStore(db, createGroupCommit(db));
});
afterEach(() => db.close());

function challenge(overrides: Partial<StoredChallenge> = {}): StoredChallenge {
  return {
    token: "cc_one",
    appId: "shop",
    kind: "image",
    answerHash: "a".repeat(64),
    triesLeft: 3,
    expiresAtMs: NOW + 300_000,
    ...overrides,
  };
}

describe("challenges", () => {
  it("takes one try per call and returns the challenge with the try already taken", async () => {
    await store.saveChallenge(challenge());
    expect(await store.takeTry("shop", "cc_one", NOW)).toEqual(challenge({ triesLeft: 2 }));
    expect((await store.takeTry("shop", "cc_one", NOW))?.triesLeft).toBe(1);
    expect((await store.takeTry("shop", "cc_one", NOW))?.triesLeft).toBe(0);
    expect(await store.takeTry("shop", "cc_one", NOW)).toBeNull();
  });

  it("keeps a slider's client key and a dev answer", async () => {
    const slider = challenge({ kind: "slider", clientKey: "K".repeat(16), devAnswer: '{"x":120}' });
    await store.saveChallenge(slider);
    expect(await store.takeTry("shop", "cc_one", NOW)).toEqual({ ...slider, triesLeft: 2 });
  });

  it("refuses a try on another app's challenge without spending one", async () => {
    await store.saveChallenge(challenge());
    for (let n = 0; n < 5; n++) expect(await store.takeTry("other", "cc_one", NOW)).toBeNull();
    expect((await store.takeTry("shop", "cc_one", NOW))?.triesLeft).toBe(2);
  });

  it("refuses a try on an expired or unknown challenge", async () => {
    await store.saveChallenge(challenge());
    expect(await store.takeTry("shop", "cc_one", NOW + 300_000)).toBeNull();
    expect((await store.takeTry("shop", "cc_one", NOW + 299_999))?.triesLeft).toBe(2);
    expect(await store.takeTry("shop", "cc_unknown", NOW)).toBeNull();
  });

  it("gives no more tries than the challenge has to 20 concurrent answers", async () => {
    await store.saveChallenge(challenge());
    const taken = await Promise.all(Array.from({ length: 20 }, () => store.takeTry("shop", "cc_one", NOW)));
    expect(taken.filter((each) => each !== null).map((each) => each?.triesLeft)).toEqual([2, 1, 0]);
  });

  it("consumes a challenge for exactly one caller, and only in its app", async () => {
    await store.saveChallenge(challenge());
    expect(await store.consumeChallenge("other", "cc_one")).toBe(false);
    const outcomes = await Promise.all(
      Array.from({ length: 20 }, () => store.consumeChallenge("shop", "cc_one")),
    );
    expect(outcomes.filter(Boolean)).toHaveLength(1);
    expect(await store.takeTry("shop", "cc_one", NOW)).toBeNull();
  });

  it("peeks (dev API) without taking a try, in any app, until it expires or is consumed", async () => {
    await store.saveChallenge(challenge({ devAnswer: "AB3K" }));
    for (let n = 0; n < 5; n++) expect((await store.peekChallenge("cc_one", NOW))?.devAnswer).toBe("AB3K");
    expect((await store.takeTry("shop", "cc_one", NOW))?.triesLeft).toBe(2);
    expect(await store.peekChallenge("cc_one", NOW + 300_000)).toBeNull();
    await store.consumeChallenge("shop", "cc_one");
    expect(await store.peekChallenge("cc_one", NOW)).toBeNull();
  });

  it("omits the optional fields a challenge does not have", async () => {
    await store.saveChallenge(challenge());
    const peeked = await store.peekChallenge("cc_one", NOW);
    expect(peeked).not.toHaveProperty("clientKey");
    expect(peeked).not.toHaveProperty("devAnswer");
  });
});

describe("passes", () => {
  const pass = { tokenHash: "p".repeat(64), appId: "shop", expiresAtMs: NOW + 600_000 };

  it("returns a pass to exactly one of 20 concurrent callers", async () => {
    await store.savePass({ ...pass, boundTo: "+8613800138000" });
    const outcomes = await Promise.all(
      Array.from({ length: 20 }, () => store.consumePass("shop", pass.tokenHash, NOW)),
    );
    const winners = outcomes.filter((each) => each !== null);
    expect(winners).toEqual([{ ...pass, boundTo: "+8613800138000" }]);
  });

  it("returns an unbound pass without boundTo", async () => {
    await store.savePass(pass);
    const consumed = await store.consumePass("shop", pass.tokenHash, NOW);
    expect(consumed).toEqual(pass);
    expect(consumed).not.toHaveProperty("boundTo");
  });

  it("refuses a pass of another app and leaves it in place", async () => {
    await store.savePass(pass);
    expect(await store.consumePass("other", pass.tokenHash, NOW)).toBeNull();
    expect(await store.consumePass("shop", pass.tokenHash, NOW)).toEqual(pass);
  });

  it("refuses an expired pass", async () => {
    await store.savePass(pass);
    expect(await store.consumePass("shop", pass.tokenHash, NOW + 600_000)).toBeNull();
  });

  it("refuses an unknown pass", async () => {
    expect(await store.consumePass("shop", "0".repeat(64), NOW)).toBeNull();
  });
});
