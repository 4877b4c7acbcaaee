import { createHmac } from "node:crypto";
import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { contactOf } from "../../../core/accounts/account-rules.js";
import { accountOfSession, sessionIdOf } from "../../../core/accounts/session-id.js";
import type { Engine } from "../../../core/engine.js";
import { OtpError } from "../../../core/errors.js";
import { parseAnyRecipient } from "../../../core/recipients.js";
import { equalInConstantTime } from "../../../core/secrets.js";
import type { Account, App, Channel, Purpose } from "../../../core/types.js";
import type { CheckCodeInput } from "../../../core/verification/check-code.js";
import { answerErrorsWith, setRetryAfter, toOtpError } from "../../problem.js";
import { answeredBug, answeredError, countRefusal, servedApp } from "../../shared/answered-errors.js";
import { createJwtKeys } from "../../shared/jwt.js";
import { refuseMalformedText } from "../../shared/malformed-text.js";
import type { TrustedPeers } from "../../shared/trusted-peers.js";
import { headerText, languageOf, readDeviceHeaders } from "./device-headers.js";
import {
  IDAAS_ERRORS,
  type IdaasErrorName,
  IdaasRefusal,
  type IdaasWireError,
  idaasErrorOf,
  idaasMessage,
} from "./error-map.js";
import {
  CaptchaReply,
  CaptchaVerifyBody,
  CaptchaVerifyReply,
  EmailLoginBody,
  EmailPasswordBody,
  EmailProfileBody,
  EmailRegisterBody,
  EmailSendBody,
  ErrorReply,
  MobilePasswordBody,
  MobileProfileBody,
  PROFILE_FIELDS,
  SCENARIOS,
  SessionReply,
  SmsLoginBody,
  SmsRegisterBody,
  SmsSendBody,
} from "./schemas.js";

export interface IdaasDialectOptions {
  engine: Engine;
  /** VERIFYD_TRUST_PROXY as a matcher: only such a peer may state the device's address (X-device-ip) */
  trustedProxies: TrustedPeers;
}

/** The IDaaS login page's example `expire` (5 days); the session lives that long. */
export const SESSION_TTL_SECONDS = 432_000;
// The id_token asserts who logged in, at login. Bamboocloud's pages also show it as the bearer of a
// signed-in call, so it names its session (`idaas_sid`, a claim of this face's alone: CloudBase's
// access tokens, signed by the same keys, name theirs as `sid`, and neither face takes the other's)
// and works as a bearer while that session lives, as the session_token does.
const ID_TOKEN_TTL_SECONDS = 3600;
const ID_TOKEN_SESSION_CLAIM = "idaas_sid";
// A session token is 40-odd characters; an id_token with its contact claims a few hundred.
const MAX_BEARER_CHARS = 4096;
const ID_TOKEN_ISSUER = "verifyd";
// AJ-Captcha's separator between the pass token and the echoed point (COMPANION-APIS.md 3.2).
const PASS_SEPARATOR = "---";
const POINT_TAG_CHARS = 16;
// verifyd's own pass tokens start so (captcha-service.ts); one given without its point tag is not
// live here, so it cannot be redeemed with the point stripped along with the tag.
const VERIFYD_PASS_PREFIX = "cp_";

/** Who is calling, from the headers every /api/v2/sdk route requires. */
interface Caller {
  app: App;
  deviceId: string;
  clientIp: string;
}

const errorResponses = { 400: ErrorReply, 500: ErrorReply };

/**
 * The Bamboocloud IDaaS CIAM dialect (COMPANION-APIS.md §3): slider captcha, e-mail and SMS code
 * sending, code login and registration under /api/v2/sdk. Handlers are thin: the onRequest hook
 * checks the device headers and resolves the app; each handler parses its body, makes its core
 * call and renders. Errors are HTTP 400 `{error_code, error_msg}` in English or Chinese by `X-L`.
 */
export async function idaasDialect(fastify: FastifyInstance, options: IdaasDialectOptions): Promise<void> {
  // Registered under its prefix so unknown /api/v2/sdk paths answer in the IDaaS shape too.
  await fastify.register(idaasRoutes, { ...options, prefix: IDAAS_PREFIX });
}

export const IDAAS_PREFIX = "/api/v2/sdk";

async function idaasRoutes(fastify: FastifyInstance, options: IdaasDialectOptions): Promise<void> {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  const { engine } = options;
  const trusted = options.trustedProxies;
  // Derived once: deriving keys per request would put key derivation on the login path.
  const jwt = createJwtKeys(engine.deps.secrets, engine.deps.clock);
  const callers = new WeakMap<FastifyRequest, Caller>();
  const pointTags = createPointTags(engine.deps.secrets.allDerivedKeys("idaas captcha point tag"));

  app.setErrorHandler(answerErrorsWith(renderIdaasError));
  // After the device and client headers (the hook below runs for unknown paths too), as IDaaS
  // checks them first.
  app.setNotFoundHandler((request, reply) =>
    renderIdaasError(new IdaasRefusal("ROUTE_NOT_FOUND"), request, reply),
  );
  refuseMalformedText(app);

  // onRequest, not preValidation: IDaaS checks the device and client headers before it reads the
  // body, so a request wrong in both answers PARAM.0001-0003 first.
  app.addHook("onRequest", async (request) => {
    const device = readDeviceHeaders(request, trusted);
    if (!device) throw new IdaasRefusal("DEVICE_INCOMPLETE");
    const clientId = headerText(request, "x-client-id");
    if (clientId === undefined) throw new IdaasRefusal("CLIENT_ID_EMPTY");
    const tenant = servedApp(request, await engine.apps.requireByClientId(clientId, "idaas"));
    callers.set(request, { app: tenant, deviceId: device.fingerprint, clientIp: device.clientIp });
  });

  const callerOf = (request: FastifyRequest): Caller => {
    const caller = callers.get(request);
    // The onRequest hook sets it for every route of this plugin; reaching here without is a bug.
    if (!caller) throw new Error("IDaaS caller not resolved");
    return caller;
  };

  async function issueSession(tenant: App, account: Account) {
    const session = await engine.accounts.createSession(tenant, account, SESSION_TTL_SECONDS, "idaas");
    const idToken = await jwt.sign(
      {
        ...(account.email ? { email: account.email } : {}),
        ...(account.phone ? { phone_number: account.phone } : {}),
        [ID_TOKEN_SESSION_CLAIM]: sessionIdOf(session.token),
      },
      {
        subject: account.id,
        audience: tenant.clientId,
        issuer: ID_TOKEN_ISSUER,
        ttlSeconds: ID_TOKEN_TTL_SECONDS,
      },
    );
    return {
      session_token: session.token,
      expire: SESSION_TTL_SECONDS,
      status: "SUCCESS" as const,
      id_token: idToken,
    };
  }

  app.get("/captcha", { schema: { response: { 200: CaptchaReply, ...errorResponses } } }, async (request) => {
    const caller = callerOf(request);
    const challenge = await engine.captcha.createChallenge(caller.app, "slider", caller.clientIp);
    if (challenge.kind !== "slider") throw new Error("a slider challenge was asked for");
    return {
      captchaId: null,
      projectCode: null,
      captchaOriginalPath: null,
      captchaFontType: null,
      captchaFontSize: null,
      secretKey: challenge.clientKey,
      originalImageBase64: challenge.backgroundPngBase64,
      point: null,
      jigsawImageBase64: challenge.piecePngBase64,
      wordList: null,
      pointList: null,
      pointJson: null,
      token: challenge.token,
      result: false as const,
      captchaVerification: null,
    };
  });

  app.post(
    "/captcha/verify",
    {
      schema: {
        body: CaptchaVerifyBody,
        response: { 200: CaptchaVerifyReply, ...errorResponses },
      },
    },
    async (request) => {
      const { app: tenant } = callerOf(request);
      const body = request.body;
      const sender = required(body.sender, "SENDER_EMPTY");
      // A missing answer or challenge is a failed verification to IDaaS, like a wrong one.
      const token = required(body.token, "CAPTCHA_FAILED");
      const pointJson = required(body.point_json, "CAPTCHA_FAILED");
      // The sender is read before the answer is judged, so a typo in it costs no captcha try.
      const bindTo = parseAnyRecipient(sender, {
        defaultCountry: engine.deps.defaultCountry,
        field: "sender",
      }).address;
      const pass = await engine.captcha.solve(tenant, token, pointJson, {
        kind: "slider",
        bindTo,
        clientIp: callerOf(request).clientIp,
      });
      return { captcha_token: pointTags.join(pass.passToken, pointJson) };
    },
  );

  async function send(request: FastifyRequest, channel: Channel, to: Text, body: SendFields) {
    const caller = callerOf(request);
    const field = channel === "email" ? "email" : "mobile";
    // The seed's order: recipient, scene, pass token, then what their values mean.
    const recipient = required(to, "MOBILE_EMPTY");
    const type = required(body.type, "SCENE_EMPTY");
    const captchaToken = required(body.captcha_token, "PASS_TOKEN_EMPTY");
    const scenario = SCENARIOS[channel].get(type);
    if (!scenario) throw new IdaasRefusal("SCENE_UNKNOWN");
    const passToken = pointTags.passOf(captchaToken);
    const accountId =
      scenario.rule === "logged_in_contact_blank" ? await loggedInAccountId(request, caller.app) : undefined;
    // An app that registers on code login (IDaaS's enterprise setting; verifyd's `loginOrRegister`)
    // sends a login code to an unknown contact too.
    const rule = scenario.purpose === "sign_in" && caller.app.loginOrRegister ? "any" : scenario.rule;
    await engine.sendCode({
      app: caller.app,
      channel,
      to: recipient,
      purpose: scenario.purpose,
      rule,
      locale: headerText(request, "x-l"),
      accountId,
      clientIp: caller.clientIp,
      deviceId: caller.deviceId,
      face: "idaas",
      captchaToken: passToken,
      toField: field,
    });
  }

  /**
   * BIND_* sends to a logged-in account that lacks the contact, UPDATE_PWD_* codes change a
   * logged-in account's password, and profile/update-* change its contact. IDaaS's calls name no
   * account, so the session this face issued is accepted as `Authorization: Bearer
   * <session_token>` (or its id_token).
   */
  async function loggedInSession(
    request: FastifyRequest,
    tenant: App,
  ): Promise<{ account: Account; sessionId: string } | undefined> {
    const bearer = /^Bearer\s+(\S+)$/i.exec(headerText(request, "authorization") ?? "")?.[1];
    if (bearer === undefined || bearer.length > MAX_BEARER_CHARS) return undefined;
    if (bearer.startsWith("eyJ")) {
      const claims = await jwt.verify(bearer, { issuer: ID_TOKEN_ISSUER, audience: tenant.clientId });
      const sessionId = claims?.[ID_TOKEN_SESSION_CLAIM];
      if (typeof sessionId !== "string" || typeof claims?.sub !== "string") return undefined;
      const account = await accountOfSession(engine.deps, tenant, sessionId);
      return account?.id === claims.sub ? { account, sessionId } : undefined;
    }
    const account = await engine.accounts.resolveSession(tenant, bearer, "idaas");
    return account ? { account, sessionId: sessionIdOf(bearer) } : undefined;
  }

  async function loggedInAccountId(request: FastifyRequest, tenant: App): Promise<string | undefined> {
    return (await loggedInSession(request, tenant))?.account.id;
  }

  const emptyReplySchema = <Body>(body: Body) => ({ body, response: errorResponses });

  app.post("/email/send", { schema: emptyReplySchema(EmailSendBody) }, async (request, reply) => {
    await send(request, "email", request.body.email, request.body);
    // IDaaS answers a queued code with 200 and no body at all (so no 200 schema to type it by).
    return (reply as FastifyReply).code(200).send();
  });

  app.post("/sms/send", { schema: emptyReplySchema(SmsSendBody) }, async (request, reply) => {
    await send(request, "sms", request.body.mobile, request.body);
    return (reply as FastifyReply).code(200).send();
  });

  async function signIn(request: FastifyRequest, channel: Channel, to: Text, code: Text) {
    const { app: tenant } = callerOf(request);
    const field = channel === "email" ? "email" : "mobile";
    const recipient = required(to, channel === "email" ? "EMAIL_EMPTY" : "MOBILE_EMPTY");
    const verifyCode = required(code, "CODE_EMPTY");
    const account = await engine.signInWithCode({
      app: tenant,
      target: { channel, to: recipient, purpose: "sign_in", toField: field },
      code: verifyCode,
      codeField: "verify_code",
    });
    return issueSession(tenant, account);
  }

  const sessionSchema = <Body>(body: Body) => ({
    body,
    response: { 200: SessionReply, ...errorResponses },
  });

  app.post("/login/email-verify-code", { schema: sessionSchema(EmailLoginBody) }, (request) =>
    signIn(request, "email", request.body.email, request.body.verify_code),
  );

  // Bamboocloud and Huawei OneAccess publish the SMS consumers as `mobile-verify-code`; verifyd first
  // served them as `sms-verify-code` (the name COMPANION-APIS.md 3.5 guessed), kept as an alias.
  for (const path of ["/login/mobile-verify-code", "/login/sms-verify-code"]) {
    app.post(path, { schema: sessionSchema(SmsLoginBody) }, (request) =>
      signIn(request, "sms", request.body.mobile, request.body.verify_code),
    );
  }

  async function register(request: FastifyRequest, channel: Channel, body: RegisterFields) {
    const { app: tenant } = callerOf(request);
    const field = channel === "email" ? "email" : "mobile";
    const recipient = required(body[field], channel === "email" ? "EMAIL_EMPTY" : "MOBILE_EMPTY");
    const verifyCode = required(body.verify_code, "CODE_EMPTY");
    const username = nonEmpty(body.user_name);
    const account = await engine.signUp({
      app: tenant,
      proof: {
        code: {
          app: tenant,
          target: { channel, to: recipient, purpose: "sign_up", toField: field },
          code: verifyCode,
          codeField: "verify_code",
        },
      },
      username,
      password: nonEmpty(body.pwd),
      profile: profileOf(channel, body),
      fields: { contact: field, username: "user_name" },
    });
    return issueSession(tenant, account);
  }

  app.post("/register/email-verify-code", { schema: sessionSchema(EmailRegisterBody) }, (request) =>
    register(request, "email", request.body),
  );

  for (const path of ["/register/mobile-verify-code", "/register/sms-verify-code"]) {
    app.post(path, { schema: sessionSchema(SmsRegisterBody) }, (request) =>
      register(request, "sms", request.body),
    );
  }

  /**
   * Bamboocloud's and OneAccess's password calls by code. With the contact, a forgotten password:
   * its FORGET_PWD_* code resets it and ends every session (engine.resetPassword). Without, a
   * logged-in change (`Authorization: Bearer <session_token>`): the UPDATE_PWD_* code must have gone
   * to the account's own contact, and the caller's session stays, as after any password change.
   */
  async function updatePassword(request: FastifyRequest, channel: Channel, body: PasswordFields) {
    const { app: tenant } = callerOf(request);
    const field = channel === "email" ? "email" : "mobile";
    const loggedIn =
      nonBlank(body[field]) === undefined && headerText(request, "authorization") !== undefined;
    // The contact, the code, the password: each absent or blank one answers its own error.
    const to = loggedIn
      ? undefined
      : required(body[field], channel === "email" ? "EMAIL_EMPTY" : "MOBILE_EMPTY");
    const code = required(body.verify_code, "CODE_EMPTY");
    const password = required(body.password, "PASSWORD_EMPTY");
    if (to !== undefined) {
      const target = { channel, to, purpose: "reset_password" as const, toField: field };
      await engine.resetPassword({
        app: tenant,
        proof: { code: { app: tenant, target, code, codeField: "verify_code" } },
        password,
      });
      return;
    }
    let session = await loggedInSession(request, tenant);
    if (!session) throw new OtpError("LOGIN_REQUIRED");
    const own = channel === "email" ? session.account.email : session.account.phone;
    if (own === undefined) throw new OtpError("CONTACT_MISSING", { details: { field } });
    await engine.checkCode({
      app: tenant,
      target: { channel, to: own, purpose: "change_password", toField: field },
      code,
      codeField: "verify_code",
    });
    // The account may change while the code is checked (another change of the password wins the
    // race). If this session lives on (a change by this same session keeps it), this change
    // follows that one, as two made one after the other would; once, and else a login is asked
    // for, as IDaaS asks it, not "the app is not registered".
    for (let tries = 2; ; tries--) {
      try {
        await engine.accounts.update(session.account, { password }, { keepSessions: [session.sessionId] });
        return;
      } catch (error) {
        if (!(error instanceof OtpError && error.code === "UNAUTHENTICATED")) throw error;
        session = tries > 1 ? await loggedInSession(request, tenant) : undefined;
        if (!session) throw new OtpError("LOGIN_REQUIRED");
      }
    }
  }

  // IDaaS answers a changed password with 200 and no body, as a queued code.
  const passwordRoutes = [
    ["/pwd/update-by-email", "email", EmailPasswordBody],
    ["/pwd/update-by-mobile", "sms", MobilePasswordBody],
  ] as const;
  for (const [path, channel, body] of passwordRoutes) {
    app.post(path, { schema: emptyReplySchema(body) }, async (request, reply) => {
      await updatePassword(request, channel, request.body);
      return (reply as FastifyReply).code(200).send();
    });
  }

  /**
   * Bamboocloud's "Update Personal Email" and "Update Personal Mobile Number": the logged-in
   * account (`Authorization: Bearer <id_token>`, or its session_token) takes the contact the code
   * sent there proves (engine.changeContact: refused when another account has it, written once
   * the code is spent). One route per channel redeems both scenarios that send such codes,
   * chosen by the account: with a contact of the channel, only an UPDATE_* code (BIND_* is never
   * sent to such an account); without one, a BIND_* code or an UPDATE_* code, whichever the value
   * is, as UPDATE_* is sent to a new contact whoever asks.
   */
  async function updateContact(request: FastifyRequest, channel: Channel, body: ProfileFields) {
    const { app: tenant } = callerOf(request);
    // The pages' own example refusal: a post-login call checks its bearer first.
    const session = await loggedInSession(request, tenant);
    if (!session) throw new IdaasRefusal("ID_TOKEN_INVALID");
    const field = channel === "email" ? "email" : "mobile";
    const to = required(body[field], channel === "email" ? "EMAIL_EMPTY" : "MOBILE_EMPTY");
    const code = required(body.verify_code, "CODE_EMPTY");
    const codeFor = (purpose: Purpose): CheckCodeInput => ({
      app: tenant,
      target: { channel, to, purpose, toField: field },
      code,
      codeField: "verify_code",
    });
    let purpose: Purpose = "change_contact";
    if (contactOf(session.account, channel) === undefined) {
      // Peeked first, to learn which of the two codes the value is: a right peek costs neither
      // an attempt; a wrong value costs each pending one an attempt (engine.peekAnyCode).
      const { record } = await engine.peekAnyCode({
        app: tenant,
        targets: [codeFor("bind_contact").target, codeFor("change_contact").target],
        code,
        codeField: "verify_code",
      });
      purpose = record.purpose;
    }
    try {
      await engine.changeContact({
        app: tenant,
        account: session.account,
        field,
        proof: { code: codeFor(purpose) },
      });
    } catch (error) {
      // The account's password changed while the code was checked (a reset, which ended this
      // login, or a change by this login): the code is spent and the contact not written. A new
      // login is the nearest IDaaS answer, not "the app is not registered".
      if (error instanceof OtpError && error.code === "UNAUTHENTICATED") {
        throw new IdaasRefusal("ID_TOKEN_INVALID");
      }
      throw error;
    }
  }

  // Both pages answer a change with 200 and no body.
  const profileRoutes = [
    ["/profile/update-email", "email", EmailProfileBody],
    ["/profile/update-mobile", "sms", MobileProfileBody],
  ] as const;
  for (const [path, channel, body] of profileRoutes) {
    app.post(path, { schema: emptyReplySchema(body) }, async (request, reply) => {
      await updateContact(request, channel, request.body);
      return (reply as FastifyReply).code(200).send();
    });
  }
}

/** A text field of a body; the ones that take a number too (schemas.ts `digits`) read it as text. */
type Text = string | number | undefined;

type PasswordFields = Partial<Record<"email" | "mobile" | "verify_code" | "password", Text>>;

type ProfileFields = Partial<Record<"email" | "mobile" | "verify_code", Text>>;

interface SendFields {
  type?: string | undefined;
  captcha_token?: string | undefined;
}

type RegisterFields = Partial<Record<"email" | "mobile" | "verify_code" | "pwd" | "user_name", Text>> &
  Partial<Record<(typeof PROFILE_FIELDS)[number], Text>> & {
    extension?: Record<string, string | number | boolean | null> | undefined;
  };

/** A field IDaaS requires: absent or blank answers that field's own error. */
function required(value: Text, missing: IdaasErrorName): string {
  const given = nonBlank(value);
  if (given === undefined) throw new IdaasRefusal(missing);
  return given;
}

function nonBlank(value: Text): string | undefined {
  const given = textOf(value);
  return given === undefined || given.trim().length === 0 ? undefined : given;
}

function nonEmpty(value: Text): string | undefined {
  const given = textOf(value);
  return given === undefined || given.length === 0 ? undefined : given;
}

/** A field as text: a number (the schema admits only a non-negative safe integer) as its digits. */
function textOf(value: Text): string | undefined {
  return typeof value === "number" ? String(value) : value;
}

/**
 * The registration's profile fields, as given. The other contact (a mobile in an e-mail
 * registration, or the reverse) is unverified, so it is kept as profile data only: made a login
 * contact, it would let anyone claim someone else's number before its owner signs up.
 */
function profileOf(channel: Channel, body: RegisterFields): Record<string, string> {
  const profile: Record<string, string> = {};
  for (const field of PROFILE_FIELDS) {
    const value = nonEmpty(body[field]);
    if (value !== undefined) profile[field] = value;
  }
  const other = nonEmpty(channel === "email" ? body.mobile : body.email);
  if (other !== undefined) profile[channel === "email" ? "unverified_mobile" : "unverified_email"] = other;
  if (body.extension && Object.keys(body.extension).length > 0) {
    profile.extension = JSON.stringify(body.extension);
  }
  return profile;
}

/**
 * The one renderer: wire refusals as they are, core errors through the total map, Fastify's own
 * refusals (schema, JSON, size, content type) as parameter errors, anything else as IDaaS's
 * "system busy" with the request id in the log.
 */
export function renderIdaasError(error: unknown, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  const lang = languageOf(request);
  let wire: IdaasWireError;
  if (error instanceof IdaasRefusal) {
    wire = error.wire;
    countRefusal(request, "idaas", wire.code);
  } else if (
    typeof error === "object" &&
    error !== null &&
    (error as FastifyError).validation !== undefined
  ) {
    // A schema refusal (wrong type, too long): the field exists but its value cannot be one.
    wire = IDAAS_ERRORS.PARAM_INVALID;
    countRefusal(request, "idaas", "VALIDATION_FAILED");
  } else {
    const otpError = toOtpError(error, request);
    if (!otpError) {
      answeredBug(request, "idaas", error);
      wire = IDAAS_ERRORS.SYSTEM_BUSY;
    } else {
      wire = idaasErrorOf(otpError);
      answeredError(request, "idaas", otpError);
      setRetryAfter(reply, otpError);
      return reply.code(wire.status).send({
        error_code: wire.code,
        error_msg: idaasMessage(wire, lang, otpError.details.retryAfterSeconds),
      });
    }
  }
  return reply.code(wire.status).send({ error_code: wire.code, error_msg: idaasMessage(wire, lang) });
}

/**
 * IDaaS's pass token echoes the answer's point after the pass (`<pass>---<point_json>`), and
 * AJ-Captcha honours the pair as one: the same pass with another point does not pass. A short keyed
 * tag on the pass (`<pass>.<tag>---<point_json>`) binds the two without storing the point. Keys are
 * newest first, so a tag made before a secret rotation still verifies.
 */
function createPointTags(keys: readonly Buffer[]) {
  const tag = (key: Buffer, pass: string, point: string) =>
    createHmac("sha256", key).update(`${pass}\0${point}`).digest("base64url").slice(0, POINT_TAG_CHARS);
  return {
    join: (pass: string, point: string) =>
      `${pass}.${tag(keys[0] as Buffer, pass, point)}${PASS_SEPARATOR}${point}`,
    /**
     * The pass of a `captcha_token`. One issued here whose point was changed, or that lost its
     * point, is a mismatch (CAPTCHA.0004); a verifyd pass stripped of its tag is not live
     * (CAPTCHA.0003); any other token is handed on whole (a third-party widget's), for the core to
     * judge.
     */
    passOf(captchaToken: string): string {
      // A point without its pass.
      if (captchaToken.startsWith(PASS_SEPARATOR)) throw new IdaasRefusal("PASS_TOKEN_MISMATCH");
      // Not ours: a third-party widget's token, whole (Turnstile's and hCaptcha's hold dots, and
      // may hold the separator), or another's pass, which the core refuses either way.
      if (!captchaToken.startsWith(VERIFYD_PASS_PREFIX)) return captchaToken;
      const at = captchaToken.lastIndexOf(PASS_SEPARATOR);
      if (at < 0) throw new IdaasRefusal("PASS_TOKEN_MISMATCH");
      const head = captchaToken.slice(0, at);
      const point = captchaToken.slice(at + PASS_SEPARATOR.length);
      const dot = head.lastIndexOf(".");
      if (dot <= 0) throw new IdaasRefusal("PASS_TOKEN_INVALID");
      const pass = head.slice(0, dot);
      const given = head.slice(dot + 1);
      // Compared in constant time, as every other keyed hash is: the tag is what binds the point.
      if (!keys.some((key) => equalInConstantTime(tag(key, pass, point), given)))
        throw new IdaasRefusal("PASS_TOKEN_MISMATCH");
      return pass;
    },
  };
}
