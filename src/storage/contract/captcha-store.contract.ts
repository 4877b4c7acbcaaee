import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { CaptchaStore, StoredChallenge } from "../../core/ports.js";
import { baseTime, hexHash, uniqueId } from "./fixtures.contract.js";

export interface CaptchaStoreFixture {
  captcha: CaptchaStore;
  close(): Promise<void>;
}

/** The CaptchaStore contract: tries taken before comparing; challenges and passes single use. */
export function captchaStoreContract(name: string, open: () => Promise<CaptchaStoreFixture>): void {
  describe(`CaptchaStore contract: ${name}`, () => {
    let fixture: CaptchaStoreFixture;
    let captcha: CaptchaStore;
    beforeAll(async () => {
      fixture = await open();
      captcha = fixture.captcha;
    });
    afterAll(async () => {
      await fixture?.close();
    });

    const challenge = (now: number, fields: Partial<StoredChallenge> = {}): StoredChallenge => ({
      token: uniqueId("cc"),
      appId: uniqueId("app"),
      kind: "slider",
      answerHash: hexHash(),
      clientKey: "k3y",
      triesLeft: 3,
      expiresAtMs: now + 300_000,
      devAnswer: "237",
      ...fields,
    });

    it("takes a try per answer and none beyond the last", async () => {
      const now = baseTime();
      const saved = challenge(now, { triesLeft: 2 });
      await captcha.saveChallenge(saved);
      expect(await captcha.takeTry(saved.appId, saved.token, now)).toEqual({ ...saved, triesLeft: 1 });
      expect(await captcha.takeTry(saved.appId, saved.token, now)).toEqual({ ...saved, triesLeft: 0 });
      expect(await captcha.takeTry(saved.appId, saved.token, now)).toBeNull();
    });

    it("gives 20 concurrent answers no more tries than the challenge has", async () => {
      const now = baseTime();
      const saved = challenge(now, { triesLeft: 3 });
      await captcha.saveChallenge(saved);
      const tries = await Promise.all(
        Array.from({ length: 20 }, () => captcha.takeTry(saved.appId, saved.token, now)),
      );
      expect(tries.filter((taken) => taken !== null)).toHaveLength(3);
    });

    it("refuses a try for another app or after expiry", async () => {
      const now = baseTime();
      const saved = challenge(now, { kind: "image" });
      delete saved.clientKey;
      delete saved.devAnswer;
      await captcha.saveChallenge(saved);
      expect(await captcha.takeTry(uniqueId("app"), saved.token, now)).toBeNull();
      expect(await captcha.takeTry(saved.appId, saved.token, saved.expiresAtMs)).toBeNull();
      expect(await captcha.peekChallenge(saved.token, now)).toEqual(saved);
      expect(await captcha.peekChallenge(saved.token, saved.expiresAtMs)).toBeNull();
    });

    it("consumes a solved challenge for exactly one caller", async () => {
      const now = baseTime();
      const saved = challenge(now);
      await captcha.saveChallenge(saved);
      expect(await captcha.consumeChallenge(uniqueId("app"), saved.token)).toBe(false);
      const results = await Promise.all(
        Array.from({ length: 20 }, () => captcha.consumeChallenge(saved.appId, saved.token)),
      );
      expect(results.filter(Boolean)).toHaveLength(1);
      expect(await captcha.peekChallenge(saved.token, now)).toBeNull();
    });

    it("hands a live pass to exactly one caller, and an expired one to none", async () => {
      const now = baseTime();
      const appId = uniqueId("app");
      const pass = { tokenHash: hexHash(), appId, boundTo: "ann@example.com", expiresAtMs: now + 600_000 };
      await captcha.savePass(pass);
      const results = await Promise.all(
        Array.from({ length: 20 }, () => captcha.consumePass(appId, pass.tokenHash, now)),
      );
      expect(results.filter((result) => result !== null)).toEqual([pass]);
      const unbound = { tokenHash: hexHash(), appId, expiresAtMs: now + 1000 };
      await captcha.savePass(unbound);
      expect(await captcha.consumePass(appId, unbound.tokenHash, now + 1000)).toBeNull();
    });
  });
}
