import { createHmac, timingSafeEqual } from "node:crypto";
import { OtpError } from "../errors.js";
import { newSecretToken, sha256Hex } from "../ids.js";
import type { CaptchaGenerator, CaptchaKind, CaptchaStore, Clock } from "../ports.js";
import type { CodeSecrets } from "../secrets.js";
import type { App } from "../types.js";

/** A challenge lives 300 s and allows a few tries; its pass token lives 600 s (issue 3). */
export const CHALLENGE_TTL_SECONDS = 300;
export const CHALLENGE_TRIES = 3;
export const PASS_TTL_SECONDS = 600;
// Answers beyond this size are refused unread: no real answer is longer.
const MAX_ANSWER_CHARS = 2048;

export interface CaptchaServiceDeps {
  store: CaptchaStore;
  generator: CaptchaGenerator;
  secrets: CodeSecrets;
  clock: Clock;
  /** keeps each answer in clear for `GET /v1/dev/captcha/{token}` (dev mode only) */
  devMode: boolean;
}

export type Challenge =
  | { kind: "image"; token: string; expiresInSeconds: number; imageDataUri: string }
  | {
      kind: "slider";
      token: string;
      expiresInSeconds: number;
      backgroundPngBase64: string;
      piecePngBase64: string;
      width: number;
      height: number;
      y: number;
      clientKey: string;
    };

export interface CaptchaPassResult {
  passToken: string;
  expiresInSeconds: number;
}

/**
 * Captcha challenges and pass tokens, shared by every face. Answers rest only as keyed hashes;
 * tries are taken before comparing; a pass token is single use and may be bound to a recipient.
 */
export function createCaptchaService(deps: CaptchaServiceDeps) {
  const { store, generator, clock } = deps;
  const key = deps.secrets.deriveKey("captcha answers");
  const answerHash = (token: string, answer: string) =>
    createHmac("sha256", key).update(token).update("\0").update(answer).digest("hex");
  const failed = (message?: string) => new OtpError("CAPTCHA_FAILED", message ? { message } : {});

  return {
    async createChallenge(app: App, kind: CaptchaKind): Promise<Challenge> {
      const token = newSecretToken("cc");
      const expiresAtMs = clock.nowMs() + CHALLENGE_TTL_SECONDS * 1000;
      const base = { token, appId: app.id, kind, triesLeft: CHALLENGE_TRIES, expiresAtMs };
      if (kind === "image") {
        const image = generator.image();
        const answer = generator.normalizeImageAnswer(image.answer);
        await store.saveChallenge({
          ...base,
          answerHash: answerHash(token, answer),
          ...(deps.devMode ? { devAnswer: answer } : {}),
        });
        return { kind, token, expiresInSeconds: CHALLENGE_TTL_SECONDS, imageDataUri: image.imageDataUri };
      }
      const slider = generator.slider();
      const clientKey = generator.clientKey();
      await store.saveChallenge({
        ...base,
        answerHash: answerHash(token, String(Math.round(slider.x))),
        clientKey,
        ...(deps.devMode ? { devAnswer: JSON.stringify({ x: slider.x }) } : {}),
      });
      return {
        kind,
        token,
        expiresInSeconds: CHALLENGE_TTL_SECONDS,
        backgroundPngBase64: slider.backgroundPngBase64,
        piecePngBase64: slider.piecePngBase64,
        width: slider.width,
        height: slider.height,
        y: slider.y,
        clientKey,
      };
    },

    /**
     * Judges an answer. Image answers are case-insensitive; slider answers (the x offset, plain or
     * AJ-Captcha encrypted) pass within the generator's tolerance. A right answer spends the
     * challenge and returns a pass token, bound to `bindTo` when given.
     */
    async solve(app: App, token: string, rawAnswer: string, bindTo?: string): Promise<CaptchaPassResult> {
      if (rawAnswer.length === 0 || rawAnswer.length > MAX_ANSWER_CHARS) throw failed();
      const now = clock.nowMs();
      const challenge = await store.takeTry(app.id, token, now);
      if (!challenge) throw failed("The captcha is unknown, expired or out of tries; request a new one");
      let right = false;
      if (challenge.kind === "image") {
        right = hashEquals(
          answerHash(token, generator.normalizeImageAnswer(rawAnswer)),
          challenge.answerHash,
        );
      } else {
        const x = generator.parseSliderX(rawAnswer, challenge.clientKey ?? null);
        if (x !== null) {
          // Every offset within the tolerance is hashed and compared, so the stored hash never
          // has to reveal x itself.
          const center = Math.round(x);
          const tolerance = generator.sliderTolerancePx;
          for (let offset = -tolerance; offset <= tolerance; offset++) {
            if (hashEquals(answerHash(token, String(center + offset)), challenge.answerHash)) right = true;
          }
        }
      }
      if (!right) throw failed();
      if (!(await store.consumeChallenge(app.id, token))) throw failed();
      const passToken = newSecretToken("cp");
      await store.savePass({
        tokenHash: sha256Hex(passToken),
        appId: app.id,
        ...(bindTo ? { boundTo: bindTo } : {}),
        expiresAtMs: now + PASS_TTL_SECONDS * 1000,
      });
      return { passToken, expiresInSeconds: PASS_TTL_SECONDS };
    },

    /**
     * Spends a pass token for a send to `recipient`. A pass is spent even when it is bound to
     * another recipient (fail closed: a leaked pass cannot be retried against other numbers).
     */
    async redeemPass(app: App, passToken: string, recipient: string): Promise<void> {
      if (passToken.length === 0 || passToken.length > 256) throw failed();
      const pass = await store.consumePass(app.id, sha256Hex(passToken), clock.nowMs());
      if (!pass) throw failed("The captcha token is invalid, expired or already used");
      if (pass.boundTo !== undefined && pass.boundTo !== recipient) {
        throw failed("The captcha token was solved for another recipient");
      }
    },

    /** Dev API: the answer of a challenge, `"AB3K"` or `{x: 237}`; null when unknown. */
    async devAnswer(token: string): Promise<string | { x: number } | null> {
      const challenge = await store.peekChallenge(token, clock.nowMs());
      if (!challenge?.devAnswer) return null;
      return challenge.kind === "image"
        ? challenge.devAnswer
        : (JSON.parse(challenge.devAnswer) as { x: number });
    },
  };
}

export type CaptchaService = ReturnType<typeof createCaptchaService>;

function hashEquals(a: string, b: string): boolean {
  return a.length === b.length && timingSafeEqual(Buffer.from(a), Buffer.from(b));
}
