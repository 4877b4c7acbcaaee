import { createHmac } from "node:crypto";
import { OtpError } from "../errors.js";
import { newSecretToken, sha256Hex } from "../ids.js";
import type {
  CaptchaGenerator,
  CaptchaKind,
  CaptchaStore,
  Clock,
  CounterStore,
  ExternalCaptchaVerifier,
} from "../ports.js";
import { foldedAddress } from "../recipients.js";
import { type CodeSecrets, equalInConstantTime } from "../secrets.js";
import type { App, RateRule } from "../types.js";
import { clientAddressOf, siteOf, subnetOf } from "./abuse-rules.js";

/** A challenge lives 300 s and allows a few tries; its pass token lives 600 s (issue 3). */
export const CHALLENGE_TTL_SECONDS = 300;
export const CHALLENGE_TRIES = 3;
/**
 * A slider takes one answer, as AJ-Captcha's `check` deletes its token before comparing: it shows a
 * decoy gap beside the real one, and a second try would let a script answer both.
 */
const SLIDER_TRIES = 1;
export const PASS_TTL_SECONDS = 600;
// Our pass tokens; an app with a third-party widget takes that widget's tokens instead.
const PASS_TOKEN_PREFIX = "cp_";
// What `newSecretToken` makes of it: the prefix and 24 random bytes in base64url.
const PASS_TOKEN_SHAPE = /^cp_[A-Za-z0-9_-]{32}$/;
// Answers beyond this size are refused unread: no real answer is longer.
const MAX_ANSWER_CHARS = 2048;

/**
 * Why a pass token was refused, in `details.rule` of its CAPTCHA_FAILED: IDaaS answers a pass that
 * is no longer live (unknown, expired, spent) and one solved for another recipient with different
 * codes. A detail rather than two registry codes, so the other faces' wire codes stay as they are.
 */
export const CAPTCHA_PASS_REFUSALS = {
  notLive: "captcha_pass_not_live",
  otherRecipient: "captcha_pass_other_recipient",
} as const;

/** `details.rule` of the refusal to draw or judge a built-in challenge for an app with a vendor. */
export const CAPTCHA_EXTERNAL_ONLY = "captcha_external_only";

/**
 * Per client IP (an IPv6 client by its /64) and 10 minutes: challenges drawn (each costs CPU to
 * render) and wrong answers (a blind guesser solves a slider about once in eight challenges, so its
 * guesses must be scarce).
 */
export const CHALLENGES_PER_IP = { limit: 30, windowSeconds: 600 };
export const WRONG_ANSWERS_PER_IP = { limit: 10, windowSeconds: 600 };
/**
 * Challenges drawn per 10 minutes by the networks a bot rotates its addresses within, as the risk
 * rules count them: an IPv4 /24 or IPv6 /56 subnet, and an IPv6 /48 site (which holds 65,536 of
 * the /64 clients above). Only draws a client's own budget let through count here (so a network
 * is spent by 20 of its clients at their limits, not by one). Sized for a carrier-grade NAT or a
 * campus behind one /24, whose every client the risk rules ask for a captcha from the network's
 * 11th send in 10 minutes: 600 is one a second, 1-5 ms of the render thread.
 */
export const CHALLENGES_PER_SUBNET = { limit: 600, windowSeconds: 600 };
export const CHALLENGES_PER_SITE = { limit: 600, windowSeconds: 600 };
/**
 * Challenges one process renders per second for one app, whoever asks: each takes 1-5 ms of the
 * renderer (the server's render thread), so draws from many networks, each within its budgets,
 * could otherwise take all of it. 50 keep one app's rendering to a quarter of a core at most, and
 * a flood of one app's draws (or its busy hour) leaves the other apps theirs. Past them a draw is
 * refused before anything is counted or rendered. (The render thread bounds its own backlog too.)
 */
export const RENDERS_PER_SECOND = 50;
/** The wait a draw the renderer refused (busy, or restarting after a failure) is told. */
const RENDERER_RETRY_AFTER_SECONDS = 1;

const tooManyDraws = (retryAfterSeconds: number, rule: string) =>
  new OtpError("RATE_LIMITED", {
    message: "Too many captchas are being drawn; try again shortly",
    details: { retryAfterSeconds, rule },
  });
const rendererDown = (internal: string) =>
  new OtpError("CAPTCHA_UNAVAILABLE", {
    message: "The captcha cannot be drawn now; try again shortly",
    details: { retryAfterSeconds: RENDERER_RETRY_AFTER_SECONDS },
    internal,
  });

export interface CaptchaServiceDeps {
  store: CaptchaStore;
  generator: CaptchaGenerator;
  secrets: CodeSecrets;
  clock: Clock;
  counters: CounterStore;
  /** the app's third-party widget verifier (Turnstile, hCaptcha, reCAPTCHA), if it has one */
  externalVerifierFor: (app: App) => ExternalCaptchaVerifier | null;
  /** keeps each answer in clear for `GET /v1/dev/captcha/{token}` (dev mode only) */
  devMode: boolean;
  /**
   * Told, at most once a minute per app, when a third-party vendor's refusal is the operator's to
   * fix (an outage, a wrong secret) rather than the client's (a bad token).
   */
  onVendorTrouble?: (appId: string, vendor: string, reason: string) => void;
  /** a monotonic clock in ms for the per-process render bound; `performance.now` by default */
  monotonicMs?: () => number;
}

// The vendor refusals that say nothing about the client: its outage (Turnstile's `internal-error`
// too), or the app's own secret. Not `sitekey-secret-mismatch`: that is what a token solved on
// another site's sitekey gets.
const VENDOR_TROUBLE =
  /^(?:timeout|network_error|internal_error|malformed_response|http_status_\d+|rejected:(?:(?:missing-input-secret|invalid-input-secret|internal-error),?)+)$/;
const VENDOR_TROUBLE_EVERY_MS = 60_000;
// How long a client is told to wait after the vendor's trouble: an outage's blip, or a timeout.
const VENDOR_TROUBLE_RETRY_AFTER_SECONDS = 5;

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
  // A challenge is hashed under the newest secret and judged under each: during a rotation, a
  // process given the secrets in the other order (or a restart that added one) still reads it.
  const newestKey = deps.secrets.deriveKey("captcha answers");
  const keys = deps.secrets.allDerivedKeys("captcha answers");
  const hashUnder = (key: Buffer, token: string, answer: string) =>
    createHmac("sha256", key).update(token).update("\0").update(answer).digest("hex");
  const answerHash = (token: string, answer: string) => hashUnder(newestKey, token, answer);
  const answerMatches = (token: string, answer: string, stored: string) =>
    keys.some((key) => equalInConstantTime(hashUnder(key, token, answer), stored));
  const failed = (message?: string, rule?: string) =>
    new OtpError("CAPTCHA_FAILED", {
      ...(message ? { message } : {}),
      ...(rule ? { details: { rule } } : {}),
    });

  const vendorTroubleToldAtMs = new Map<string, number>();
  const tellVendorTrouble = (appId: string, vendor: string, reason: string) => {
    if (!deps.onVendorTrouble) return;
    const now = clock.nowMs();
    if (now - (vendorTroubleToldAtMs.get(appId) ?? Number.NEGATIVE_INFINITY) < VENDOR_TROUBLE_EVERY_MS)
      return;
    vendorTroubleToldAtMs.set(appId, now);
    deps.onVendorTrouble(appId, vendor, reason);
  };

  const wrongAnswersKey = (client: string) => `captcha:wrong:${client}:${WRONG_ANSWERS_PER_IP.windowSeconds}`;
  // One key shape for every scope: a subnet or site names its prefix length, so never meets a client's.
  const drawsKey = (subject: string, rule: RateRule) => `captcha:new:${subject}:${rule.windowSeconds}`;
  const refusedClient = (refusedUntilMs: number, now: number, rule = "captcha_per_ip") =>
    new OtpError("RATE_LIMITED", {
      details: { retryAfterSeconds: Math.max(1, Math.ceil((refusedUntilMs - now) / 1000)), rule },
    });
  const monotonicMs = deps.monotonicMs ?? (() => performance.now());
  /** each app's renders (apps are the operator's few, so the map stays small) */
  const rendersByApp = new Map<string, ReturnType<typeof renderAllowance>>();
  const rendersOf = (app: App) => {
    let renders = rendersByApp.get(app.id);
    if (!renders) {
      renders = renderAllowance(RENDERS_PER_SECOND, monotonicMs);
      rendersByApp.set(app.id, renders);
    }
    return renders;
  };

  /**
   * Refuses an IP that drew too many challenges or answered wrong too often, or whose network drew
   * too many; resolves to the function that gives the draw back to every budget it was counted in
   * (for a draw the renderer then failed).
   */
  async function admit(app: App, clientIp: string | undefined): Promise<() => Promise<void>> {
    if (!clientIp) return async () => {};
    const client = clientAddressOf(clientIp);
    const now = clock.nowMs();
    const counted: { key: string; resetAtMs: number }[] = [];
    const draw = async (subject: string, rule: RateRule) => {
      const key = drawsKey(subject, rule);
      const hit = await deps.counters.hit(app.id, key, rule.windowSeconds, now);
      counted.push({ key, resetAtMs: hit.resetAtMs });
      return hit;
    };
    const [wrong, drawn] = await Promise.all([
      deps.counters.peek(app.id, wrongAnswersKey(client), now),
      draw(client, CHALLENGES_PER_IP),
    ]);
    const refusedUntil = Math.max(
      wrong.count >= WRONG_ANSWERS_PER_IP.limit ? wrong.resetAtMs : 0,
      drawn.count > CHALLENGES_PER_IP.limit ? drawn.resetAtMs : 0,
    );
    if (refusedUntil > 0) throw refusedClient(refusedUntil, now);
    // The networks the risk rules count a client in (the same keys' subjects), after the client's
    // own budget let the draw through.
    const subnet = subnetOf(clientIp);
    const site = siteOf(clientIp);
    const [bySubnet, bySite] = await Promise.all([
      subnet === undefined ? undefined : draw(subnet, CHALLENGES_PER_SUBNET),
      site === undefined ? undefined : draw(site, CHALLENGES_PER_SITE),
    ]);
    if (bySubnet && bySubnet.count > CHALLENGES_PER_SUBNET.limit) {
      throw refusedClient(bySubnet.resetAtMs, now, "captcha_per_subnet");
    }
    if (bySite && bySite.count > CHALLENGES_PER_SITE.limit) {
      throw refusedClient(bySite.resetAtMs, now, "captcha_per_site");
    }
    return async () => {
      await Promise.all(counted.map(({ key, resetAtMs }) => deps.counters.refund(app.id, key, resetAtMs)));
    };
  }

  /**
   * Takes one of the app's renders in this process and the client's draw budgets, or refuses:
   * first while the renderer would refuse the draw (busy, or restarting after a failure) and then
   * the app's renders, as they cost no store call, and the renders given back if the client's
   * budgets refuse, so a client over its budgets cannot use up everyone's renders. Resolves to the
   * function that gives the draw back to all of them, for a draw the renderer failed: a refused
   * request consumes no budget.
   */
  async function admitDraw(app: App, clientIp: string | undefined): Promise<() => Promise<void>> {
    const refusal = generator.refusal?.() ?? null;
    if (refusal === "busy") throw tooManyDraws(RENDERER_RETRY_AFTER_SECONDS, "captcha_renders_waiting");
    if (refusal === "down") throw rendererDown("the captcha renderer is starting again after a failure");
    const renders = rendersOf(app);
    const waitMs = renders.take();
    if (waitMs > 0) throw tooManyDraws(Math.ceil(waitMs / 1000), "captcha_renders_per_app");
    try {
      const giveBackCounts = await admit(app, clientIp);
      return async () => {
        renders.giveBack();
        await giveBackCounts();
      };
    } catch (error) {
      renders.giveBack();
      throw error;
    }
  }

  /** A challenge from the renderer, or the draw given back and refused as the server's trouble. */
  async function rendered<T>(render: () => Promise<T>, giveBackDraw: () => Promise<void>): Promise<T> {
    try {
      return await render();
    } catch (error) {
      await giveBackDraw();
      throw rendererDown(error instanceof Error ? error.message : String(error));
    }
  }

  /**
   * Counts an answer as wrong before it is judged, and refuses it when that puts the IP over its
   * budget; resolves to the function that gives the count back (for an answer that was not wrong).
   * Counting first, not peeking, is what bounds the guesses: a peeked budget lets concurrent
   * guesses all through, and one checked only when a challenge is drawn lets a client draw its
   * challenges first and then spend every try of each.
   */
  async function takeAnswerBudget(
    app: App,
    clientIp: string | undefined,
    { refundRefusal = false }: { refundRefusal?: boolean } = {},
  ): Promise<() => Promise<void>> {
    if (!clientIp) return async () => {};
    const key = wrongAnswersKey(clientAddressOf(clientIp));
    const now = clock.nowMs();
    const wrong = await deps.counters.hit(app.id, key, WRONG_ANSWERS_PER_IP.windowSeconds, now);
    const notWrong = () => deps.counters.refund(app.id, key, wrong.resetAtMs);
    if (wrong.count > WRONG_ANSWERS_PER_IP.limit) {
      // A refused answer of ours stays counted: it lands in the window already over budget, and
      // extends none. A widget token refused so was never judged, and may have been a good one
      // sent beside others (a page's retries): given back, so the count is of wrong ones only.
      if (refundRefusal) await notWrong();
      throw refusedClient(wrong.resetAtMs, now);
    }
    return notWrong;
  }

  /**
   * Refuses a built-in challenge to an app whose captcha is a third-party widget: its sends take
   * only the widget's tokens, so a challenge drawn or judged here would be a way round the vendor
   * for a script (one that reads our images) to no end, or a pass that is refused at the send.
   */
  function requireBuiltIn(app: App): void {
    const external = deps.externalVerifierFor(app);
    if (!external) return;
    throw new OtpError("VALIDATION_FAILED", {
      message: `This app's captcha is its ${external.id} widget: it has no built-in challenges; send the widget's token as the captcha token`,
      details: { rule: CAPTCHA_EXTERNAL_ONLY },
    });
  }

  return {
    requireBuiltIn,

    async createChallenge(app: App, kind: CaptchaKind, clientIp?: string): Promise<Challenge> {
      requireBuiltIn(app);
      const giveBackDraw = await admitDraw(app, clientIp);
      const token = newSecretToken("cc");
      const expiresAtMs = clock.nowMs() + CHALLENGE_TTL_SECONDS * 1000;
      const triesLeft = kind === "slider" ? SLIDER_TRIES : CHALLENGE_TRIES;
      const base = { token, appId: app.id, kind, triesLeft, expiresAtMs };
      if (kind === "image") {
        const image = await rendered(() => generator.image(), giveBackDraw);
        const answer = generator.normalizeImageAnswer(image.answer);
        await store.saveChallenge({
          ...base,
          answerHash: answerHash(token, answer),
          ...(deps.devMode ? { devAnswer: answer } : {}),
        });
        return { kind, token, expiresInSeconds: CHALLENGE_TTL_SECONDS, imageDataUri: image.imageDataUri };
      }
      const slider = await rendered(() => generator.slider(), giveBackDraw);
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
     * challenge and returns a pass token, bound to `bindTo` when given. A client over its budget
     * of wrong answers is refused as `createChallenge` refuses it, whatever it answers.
     *
     * `kind` is the kind of challenge the asking face draws, when it draws one kind: a challenge
     * of another kind is no challenge of that face's, refused as an unknown one. Else a face that
     * draws images only would judge another face's sliders (a kind a script may solve better)
     * and give a pass that face never binds to a recipient, as IDaaS binds its own.
     */
    async solve(
      app: App,
      token: string,
      rawAnswer: string,
      { kind, bindTo, clientIp }: { kind?: CaptchaKind; bindTo?: string; clientIp?: string } = {},
    ): Promise<CaptchaPassResult> {
      requireBuiltIn(app);
      if (rawAnswer.length === 0 || rawAnswer.length > MAX_ANSWER_CHARS) throw failed();
      // Before the challenge's try is taken: a refused answer costs the challenge nothing.
      const notWrong = await takeAnswerBudget(app, clientIp);
      const now = clock.nowMs();
      const challenge = await store.takeTry(app.id, token, now);
      // (Its try is spent all the same: only a client that was given the token can send it here.)
      if (!challenge || (kind !== undefined && challenge.kind !== kind)) {
        // No challenge, no guess: a stale token is what a person sends after a long pause.
        await notWrong();
        throw failed("The captcha is unknown, expired or out of tries; request a new one");
      }
      let right = false;
      if (challenge.kind === "image") {
        right = answerMatches(token, generator.normalizeImageAnswer(rawAnswer), challenge.answerHash);
      } else {
        const x = generator.parseSliderX(rawAnswer, challenge.clientKey ?? null);
        if (x !== null) {
          // Every offset within the tolerance is hashed and compared, so the stored hash never
          // has to reveal x itself.
          const center = Math.round(x);
          const tolerance = generator.sliderTolerancePx;
          for (let offset = -tolerance; offset <= tolerance; offset++) {
            if (answerMatches(token, String(center + offset), challenge.answerHash)) right = true;
          }
        }
      }
      // A wrong answer stays counted: enough of them and this IP gets no new challenges, nor any
      // answer judged.
      if (!right) throw failed();
      await notWrong();
      if (!(await store.consumeChallenge(app.id, token))) throw failed();
      const passToken = newSecretToken(PASS_TOKEN_PREFIX.slice(0, -1));
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
     * Resolves to a function that gives the pass back, for a send then refused without a code
     * being issued (a rate limit), so a person who solved a captcha need not solve another after
     * waiting; a third-party widget's token is spent at its vendor and cannot be given back.
     */
    async redeemPass(
      app: App,
      passToken: string,
      recipient: string,
      clientIp?: string,
    ): Promise<(bindToRecipient?: boolean) => Promise<void>> {
      const notLive = "The captcha token is invalid, expired or already used";
      const external = deps.externalVerifierFor(app);
      // An app with a widget takes its tokens alone: a pass of ours, solved on our images (which a
      // trained recognizer reads), would let a script skip the vendor. Refused before any call.
      if (external && passToken.startsWith(PASS_TOKEN_PREFIX)) {
        throw failed(
          `This app takes its ${external.id} widget's tokens, not built-in captcha passes`,
          CAPTCHA_PASS_REFUSALS.notLive,
        );
      }
      if (external) {
        // A widget token of the app's third-party captcha: its vendor judges it and enforces
        // single use. This is the one outbound call allowed on the request path (DESIGN.md); the
        // verifier fails closed on timeout. Counted as a wrong answer until the vendor says
        // otherwise, as our own challenges' answers are: a client posting made-up tokens gets
        // its few calls to the vendor, not one per request (each spends the operator's quota).
        const notWrong = await takeAnswerBudget(app, clientIp, { refundRefusal: true });
        const verdict = await external.verify(passToken, clientIp);
        if (!verdict.ok) {
          const reason = verdict.reason ?? "refused";
          const internal = `${external.id}: ${reason}`;
          // The vendor's own trouble (an outage, the app's wrong secret) says nothing of the client:
          // not counted against it, and answered as the server's trouble (still refused: fail
          // closed), so the client tries again later rather than solving the widget again.
          if (VENDOR_TROUBLE.test(reason)) {
            await notWrong();
            tellVendorTrouble(app.id, external.id, reason);
            throw new OtpError("CAPTCHA_UNAVAILABLE", {
              details: { retryAfterSeconds: VENDOR_TROUBLE_RETRY_AFTER_SECONDS },
              internal,
            });
          }
          throw new OtpError("CAPTCHA_FAILED", {
            message: notLive,
            details: { rule: CAPTCHA_PASS_REFUSALS.notLive },
            internal,
          });
        }
        await notWrong();
        return async () => {};
      }
      // A token that is not of our shape was never ours: refused without a store call, so a flood
      // of made-up tokens costs no more than one without a token.
      if (!PASS_TOKEN_SHAPE.test(passToken)) throw failed(notLive, CAPTCHA_PASS_REFUSALS.notLive);
      const pass = await store.consumePass(app.id, sha256Hex(passToken), clock.nowMs());
      if (!pass) throw failed(notLive, CAPTCHA_PASS_REFUSALS.notLive);
      if (pass.boundTo !== undefined && recipientKey(pass.boundTo) !== recipientKey(recipient)) {
        throw failed(
          "The captcha token was solved for another recipient",
          CAPTCHA_PASS_REFUSALS.otherRecipient,
        );
      }
      // Given back bound to this recipient when asked (`bindToRecipient`): a pass that has told
      // whether an account exists may not go on to ask about others.
      return (bindToRecipient = false) =>
        store.savePass(
          bindToRecipient && pass.boundTo === undefined ? { ...pass, boundTo: recipient } : pass,
        );
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

/**
 * The recipient a pass is bound to, as the send's slot and accounts match it: an email address in
 * any ASCII case is one recipient (a pass solved for `Bob@` serves a send to `bob@`), a phone
 * number is as it is. Not its mailbox: `bob+x@` is another account to ask about.
 */
function recipientKey(address: string): string {
  return foldedAddress(address.includes("@") ? "email" : "sms", address);
}

/**
 * A token bucket of `perSecond` renders, full at first and refilled continuously: `take` answers 0
 * when it took one, else the ms until one is there; `giveBack` returns one taken.
 */
function renderAllowance(perSecond: number, nowMs: () => number) {
  let tokens = perSecond;
  let atMs = nowMs();
  return {
    take(): number {
      const now = nowMs();
      tokens = Math.min(perSecond, tokens + (Math.max(0, now - atMs) * perSecond) / 1000);
      atMs = now;
      if (tokens >= 1) {
        tokens -= 1;
        return 0;
      }
      return ((1 - tokens) * 1000) / perSecond;
    },
    giveBack(): void {
      tokens = Math.min(perSecond, tokens + 1);
    },
  };
}
