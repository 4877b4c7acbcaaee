import { isIP } from "node:net";
import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { DEFAULT_APP_ID, requireServed } from "../../core/apps/apps.js";
import type { Engine } from "../../core/engine.js";
import { invalidField, OtpError } from "../../core/errors.js";
import { maskAddress, parseAnyRecipient } from "../../core/recipients.js";
import type { AccountRule, App, Purpose } from "../../core/types.js";
import { secondsUntil, statusOf } from "../../core/verification/status.js";
import { answerErrorsWith, setRetryAfter, toOtpError } from "../problem.js";
import { answeredBug, answeredError, servedApp } from "../shared/answered-errors.js";
import { refusingEncodedBodies, wordingJsonRefusals } from "../shared/body-parsers.js";
import { refuseMalformedText } from "../shared/malformed-text.js";
import { NATIVE_ERROR_STATUS, statusTitle } from "./error-map.js";
import { type NativeOperation, problemResponses } from "./refusals.js";
import {
  CancelReply,
  CaptchaBody,
  CaptchaReply,
  CaptchaVerifyBody,
  CaptchaVerifyReply,
  CheckBody,
  CheckReply,
  IdParams,
  RedeemBody,
  RedeemReply,
  SendBody,
  SendReply,
  VerificationReply,
} from "./schemas.js";

export interface NativeApiOptions {
  engine: Engine;
  /** dev mode accepts unauthenticated calls for the app `default` */
  devMode: boolean;
}

interface Caller {
  app: App;
  /** true when an API key named the app: only then are `client_ip` and `device_id` believed */
  byApiKey: boolean;
}

const IDEMPOTENCY_KEY_PATTERN = /^[\x21-\x7e]{1,255}$/;

/**
 * What `/docs` names a route by; its tag is its face's (openapi.ts), its refusals those of
 * NATIVE_REFUSALS[operationId].
 */
const described = (operationId: NativeOperation, summary: string) => ({ operationId, summary });

/** The native API (DESIGN.md "Native API"): thin handlers, one core call each. */
export async function nativeApi(fastify: FastifyInstance, options: NativeApiOptions): Promise<void> {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  const { engine, devMode } = options;

  // The send route resolves its caller in onRequest; its handler reuses that answer.
  const resolved = new WeakMap<FastifyRequest, Caller>();
  async function callerOf(request: FastifyRequest): Promise<Caller> {
    const known = resolved.get(request);
    if (known) return known;
    const caller = await resolveCaller(request);
    servedApp(request, caller.app);
    resolved.set(request, caller);
    return caller;
  }

  /** The caller, synchronously when its app is cached (nearly always), else once it is loaded. */
  function resolveCaller(request: FastifyRequest): Caller | Promise<Caller> {
    const header = request.headers.authorization;
    if (header === undefined) {
      if (!devMode)
        throw new OtpError("UNAUTHENTICATED", { message: "Authorization: Bearer <api key> is required" });
      const fallback = engine.apps.peekById(DEFAULT_APP_ID);
      return fallback === undefined
        ? engine.apps.byId(DEFAULT_APP_ID).then(keylessCaller)
        : keylessCaller(fallback);
    }
    const apiKey = /^Bearer\s+(\S{1,256})$/i.exec(header)?.[1];
    if (apiKey === undefined) throw new OtpError("UNAUTHENTICATED", { message: "The API key is not valid" });
    const found = engine.apps.peekByApiKey(apiKey);
    return found === undefined ? engine.apps.byApiKey(apiKey).then(keyCaller) : keyCaller(found);
  }

  app.setErrorHandler(answerErrorsWith(renderProblem));
  refuseMalformedText(app);
  acceptEmptyJsonAsNoBody(app);
  // Every handler answers what it throws itself, so a refusal skips Fastify's error path (see
  // `renderProblem`); the error handler keeps what fails before a handler runs.
  app.addHook("onRoute", (route) => {
    const handler = route.handler;
    route.handler = async function answeringRefusals(this: FastifyInstance, request, reply) {
      try {
        return await handler.call(this, request, reply);
      } catch (error) {
        return problemOf(error, request, reply);
      }
    };
  });

  app.post(
    "/v1/verifications",
    {
      schema: {
        ...described("sendVerification", "Send a code by email or SMS"),
        body: SendBody,
        response: { 201: SendReply, ...problemResponses("sendVerification") },
      },
      // A client the risk rules already ask for a captcha is answered before its body is read:
      // the cheapest refusal for the request a bot repeats. Backends (API-key callers) speak for
      // many users through `client_ip` in the body, so only direct callers are pre-checked; and
      // a send under an Idempotency-Key is not, since a retry of one that went through must get
      // its first answer (the full path still refuses a new one).
      // A callback hook, not an async one: when the caller is known at once (its app cached), the
      // refusal is decided without a promise round, which showed in the flood's profile.
      onRequest: (request, reply, done) => {
        const precheck = (caller: Caller) => {
          servedApp(request, caller.app);
          const refusal =
            caller.byApiKey || request.headers["idempotency-key"] !== undefined
              ? null
              : engine.precheckSendRisk({
                  app: caller.app,
                  face: "native",
                  clientIp: request.ip,
                  captchaToken: headerValue(request, "x-captcha-token"),
                });
          // Only a request that goes on to its handler needs its caller remembered.
          if (!refusal) resolved.set(request, caller);
          return refusal;
        };
        // A refusal is answered here, not passed to `done` (see `renderProblem`).
        const answer = (refusal: Error | null) =>
          refusal ? void renderProblem(refusal, request, reply) : done();
        let caller: Caller | Promise<Caller>;
        try {
          caller = resolveCaller(request);
          if (!(caller instanceof Promise)) return answer(precheck(caller));
        } catch (error) {
          return answer(error as Error);
        }
        caller.then(precheck).then(answer, answer);
      },
    },
    async (request, reply) => {
      const caller = await callerOf(request);
      const body = request.body;
      const idempotencyKey = request.headers["idempotency-key"];
      if (
        idempotencyKey !== undefined &&
        (typeof idempotencyKey !== "string" || !IDEMPOTENCY_KEY_PATTERN.test(idempotencyKey))
      ) {
        throw new OtpError("VALIDATION_FAILED", {
          message: "Idempotency-Key must be 1-255 printable ASCII characters",
          details: { field: "Idempotency-Key" },
        });
      }
      const result = await engine.sendCode({
        app: caller.app,
        channel: body.channel,
        to: body.to,
        country: body.country,
        purpose: body.purpose as Purpose,
        rule: accountRuleOf(body),
        locale: body.locale ?? acceptLanguage(request),
        accountId: body.account_id,
        clientIp: clientIpOf(caller, body.client_ip, request.ip),
        deviceId: caller.byApiKey ? body.device_id : undefined,
        face: "native",
        captchaToken: headerValue(request, "x-captcha-token"),
        idempotencyKey,
      });
      reply.code(201);
      return {
        id: result.record.id,
        channel: result.record.channel,
        to: result.maskedTo,
        purpose: result.record.purpose,
        status: "pending" as const,
        expires_in: result.expiresInSeconds,
        resend_after: result.resendAfterSeconds,
      };
    },
  );

  app.post(
    "/v1/captcha",
    {
      schema: {
        ...described("createCaptcha", "Draw a captcha challenge: an image or a slider"),
        body: CaptchaBody,
        response: { 200: CaptchaReply, ...problemResponses("createCaptcha") },
      },
    },
    async (request) => {
      const caller = await callerOf(request);
      const challenge = await engine.captcha.createChallenge(
        caller.app,
        request.body.type,
        clientIpOf(caller, request.body.client_ip, request.ip),
      );
      if (challenge.kind === "image") {
        return {
          token: challenge.token,
          type: "image" as const,
          expires_in: challenge.expiresInSeconds,
          image: challenge.imageDataUri,
        };
      }
      return {
        token: challenge.token,
        type: "slider" as const,
        expires_in: challenge.expiresInSeconds,
        background: `data:image/png;base64,${challenge.backgroundPngBase64}`,
        piece: `data:image/png;base64,${challenge.piecePngBase64}`,
        width: challenge.width,
        height: challenge.height,
        y: challenge.y,
      };
    },
  );

  app.post(
    "/v1/captcha/verify",
    {
      schema: {
        ...described("solveCaptcha", "Answer a captcha challenge for a pass to send with"),
        body: CaptchaVerifyBody,
        response: { 200: CaptchaVerifyReply, ...problemResponses("solveCaptcha") },
      },
    },
    async (request) => {
      const caller = await callerOf(request);
      const { token, answer, to } = request.body;
      const bindTo =
        to === undefined
          ? undefined
          : parseAnyRecipient(to, { defaultCountry: engine.deps.defaultCountry, field: "to" }).address;
      // Either kind: this API draws both.
      const pass = await engine.captcha.solve(
        caller.app,
        token,
        typeof answer === "number" ? String(answer) : answer,
        {
          bindTo,
          clientIp: clientIpOf(caller, request.body.client_ip, request.ip),
        },
      );
      return { captcha_token: pass.passToken, expires_in: pass.expiresInSeconds };
    },
  );

  app.post(
    "/v1/verifications/check",
    {
      schema: {
        ...described("checkVerification", "Check a code; a right one gets a verification token"),
        body: CheckBody,
        response: { 200: CheckReply, ...problemResponses("checkVerification") },
      },
    },
    async (request) => {
      const { app: tenant } = await callerOf(request);
      const result = await engine.checkCode({
        app: tenant,
        target: { id: request.body.id },
        code: request.body.code,
      });
      return {
        id: result.record.id,
        status: "approved" as const,
        token: result.token as string,
        token_expires_in: result.tokenExpiresInSeconds as number,
      };
    },
  );

  app.get(
    "/v1/verifications/:id",
    {
      schema: {
        ...described("getVerification", "A verification's status and its delivery attempts"),
        params: IdParams,
        response: { 200: VerificationReply, ...problemResponses("getVerification") },
      },
    },
    async (request) => {
      const { app: tenant } = await callerOf(request);
      const view = await engine.getVerification(tenant, request.params.id);
      const now = engine.deps.clock.nowMs();
      const { record } = view;
      return {
        id: record.id,
        channel: record.channel,
        to: maskAddress(record.channel, record.to),
        purpose: record.purpose,
        status: statusOf(record, now),
        attempts_remaining: view.attemptsRemaining,
        expires_in: secondsUntil(record.expiresAtMs, now),
        deliveries: view.deliveries.map((delivery) => ({
          provider: delivery.provider,
          status: delivery.status,
          at: new Date(delivery.atMs).toISOString(),
          ...(delivery.error ? { error: delivery.error } : {}),
          ...(delivery.providerMessageId ? { provider_message_id: delivery.providerMessageId } : {}),
        })),
      };
    },
  );

  app.post(
    "/v1/verifications/:id/cancel",
    {
      schema: {
        ...described("cancelVerification", "Cancel a pending verification"),
        params: IdParams,
        response: { 200: CancelReply, ...problemResponses("cancelVerification") },
      },
    },
    async (request) => {
      const { app: tenant } = await callerOf(request);
      const record = await engine.cancelVerification(tenant, request.params.id);
      return { id: record.id, status: "canceled" as const };
    },
  );

  app.post(
    "/v1/tokens/redeem",
    {
      schema: {
        ...described("redeemToken", "Redeem a verification token once: what was verified"),
        body: RedeemBody,
        response: { 200: RedeemReply, ...problemResponses("redeemToken") },
      },
    },
    async (request) => {
      const { app: tenant } = await callerOf(request);
      const token = await engine.redeemToken({
        app: tenant,
        token: request.body.token,
        purposes: request.body.purposes as Purpose[] | undefined,
      });
      const purpose =
        request.body.purposes?.find((wanted) => token.purposes.includes(wanted as Purpose)) ??
        token.purposes[0];
      return { channel: token.channel, to: token.to, purpose: purpose as Purpose, app: tenant.id };
    },
  );
}

/**
 * A client that sets `Content-Type: application/json` on every request sends it on the routes that
 * take no body (cancel), with an empty body, which Fastify's JSON parser refuses ("The body must not
 * be empty"). There it is no body; a route with a body schema still refuses it, through Fastify's
 * own parser, which every non-empty body goes to as before (one length test added).
 */
function acceptEmptyJsonAsNoBody(fastify: FastifyInstance): void {
  const { onProtoPoisoning, onConstructorPoisoning } = fastify.initialConfig;
  // (worded and refusing compressed bodies as the root's parser is: shared/body-parsers.ts)
  const parseJson = wordingJsonRefusals(
    fastify.getDefaultJsonParser(onProtoPoisoning ?? "error", onConstructorPoisoning ?? "error"),
  );
  fastify.removeContentTypeParser("application/json");
  fastify.addContentTypeParser(
    "application/json",
    { parseAs: "string" },
    refusingEncodedBodies<string>((request, body, done) => {
      if (body.length === 0 && request.routeOptions.schema?.body === undefined) return done(null, undefined);
      return parseJson(request, body, done);
    }),
  );
}

function keylessCaller(app: App | null): Caller {
  return { app: requireServed(app, "native"), byApiKey: false };
}

function keyCaller(app: App | null): Caller {
  if (!app) throw new OtpError("UNAUTHENTICATED", { message: "The API key is not valid" });
  return { app: requireServed(app, "native"), byApiKey: true };
}

/**
 * The end user's address for the per-IP rules: the body's `client_ip` from a backend calling with
 * an API key for many users, the peer's otherwise. Each string would be a per-IP budget of its
 * own, so a caller that sends a port or a range along (switching its users' per-IP rules off
 * without a word) is refused.
 */
function clientIpOf(caller: Caller, clientIp: string | undefined, peer: string): string {
  if (clientIp !== undefined && isIP(clientIp) === 0) {
    throw invalidField("client_ip", "client_ip must be an IPv4 or IPv6 address");
  }
  return caller.byApiKey && clientIp ? clientIp : peer;
}

/** DESIGN.md: `target` picks must_exist / must_not_exist; no `to` means the account's own contact. */
function accountRuleOf(body: {
  to?: string;
  purpose: string;
  target?: string;
  account_id?: string;
}): AccountRule {
  if (body.to === undefined) return "own_contact";
  if (body.account_id !== undefined && body.purpose === "bind_contact") return "logged_in_contact_blank";
  if (body.target === "user") return "must_exist";
  if (body.target === "not_user") return "must_not_exist";
  return "any";
}

function headerValue(request: FastifyRequest, name: string): string | undefined {
  const value = request.headers[name];
  return typeof value === "string" ? value : undefined;
}

function acceptLanguage(request: FastifyRequest): string | undefined {
  const header = request.headers["accept-language"];
  if (typeof header !== "string") return undefined;
  const first = header.split(",")[0]?.split(";")[0]?.trim();
  return first && /^[A-Za-z0-9-]{2,35}$/.test(first) ? first : undefined;
}

/**
 * RFC 9457 problem+json in the native shape; unknown errors become a 500 with the request id.
 * Handlers (wrapped in `onRoute`) and the send's pre-body check call it themselves rather than
 * pass errors to Fastify, whose error path (handleError, the onError hooks, then the error
 * handler's own send) is work a flood of refusals does not need; what that saves was within the
 * noise of a pinned benchmark (bench/RESULTS.md). The error handler still answers what fails
 * before a handler runs (schema, JSON, size).
 */
export function renderProblem(error: unknown, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  return reply.send(problemOf(error, request, reply));
}

/**
 * The problem's body, with its status, type and `Retry-After` set on the reply. A handler returns
 * it rather than sending it and returning the reply: an async handler's returned reply is a
 * thenable, which Fastify resolves once the response has finished (end-of-stream listeners on
 * every refusal); a returned body is sent as any answer is.
 */
function problemOf(error: unknown, request: FastifyRequest, reply: FastifyReply) {
  const otpError = toOtpError(error, request);
  if (!otpError) {
    const requestId = answeredBug(request, "native", error);
    reply.code(500).type("application/problem+json");
    return {
      type: "urn:verifyd:error:internal",
      title: statusTitle(500),
      status: 500,
      code: "INTERNAL",
      detail: "An unexpected error occurred; quote the request id when reporting it",
      request_id: requestId,
    };
  }
  answeredError(request, "native", otpError);
  const status = NATIVE_ERROR_STATUS[otpError.code];
  setRetryAfter(reply, otpError);
  const { details } = otpError;
  reply.code(status).type("application/problem+json");
  // Optional members stay undefined rather than being spread in: the serializer leaves them out,
  // and a refusal under attack skips building throwaway objects.
  return {
    type: problemType(otpError.code),
    title: statusTitle(status),
    status,
    code: otpError.code,
    detail: otpError.message,
    field: details.field || undefined,
    attempts_remaining: details.attemptsRemaining,
    retry_after: details.retryAfterSeconds,
  };
}

const PROBLEM_TYPES = new Map<string, string>();
/** `urn:verifyd:error:<code in kebab case>`, the problem's `type` */
function problemType(code: string): string {
  let type = PROBLEM_TYPES.get(code);
  if (type === undefined) {
    type = `urn:verifyd:error:${code.toLowerCase().replaceAll("_", "-")}`;
    PROBLEM_TYPES.set(code, type);
  }
  return type;
}
