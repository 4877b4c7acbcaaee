import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import type { FastifyBodyParser, FastifyInstance, FastifyRequest } from "fastify";
import type { LoginName } from "../../../core/accounts/account-service.js";
import type { ContactProof } from "../../../core/accounts/account-steps.js";
import type { Engine } from "../../../core/engine.js";
import { invalidField, OtpError } from "../../../core/errors.js";
import { parseRecipient } from "../../../core/recipients.js";
import type { Account, AccountRule, App, Channel, Purpose, TokenRecord } from "../../../core/types.js";
import { answerErrorsWith } from "../../problem.js";
import { countRefusal, servedApp } from "../../shared/answered-errors.js";
import { refusingEncodedBodies, wordingJsonRefusals } from "../../shared/body-parsers.js";
import { corsOnlyBodyParser } from "../../shared/cors-only-body.js";
import { refuseMalformedText } from "../../shared/malformed-text.js";
import {
  isAppOrigin,
  NO_CAPTCHA_NEEDED,
  refuseDrawnElsewhere,
  registerLegacyCaptchaFlow,
} from "./captcha-page.js";
import { CLOUDBASE_ROUTE_NOT_FOUND, renderCloudbaseError, SENDING_CODE } from "./error-map.js";
import {
  CaptchaDataReply,
  CaptchaVerifyBody,
  CaptchaVerifyReply,
  ClientQuery,
  ContactBody,
  Credentials,
  EmptyReply,
  errorResponses,
  ResetBody,
  RevokeBody,
  SendBody,
  SendReply,
  SetPasswordBody,
  SignInBody,
  SignUpBody,
  SudoBody,
  SudoReply,
  type Target,
  TokenBody,
  type Usage,
  UserReply,
  VerifyBody,
  VerifyReply,
} from "./schemas.js";
import { createSessionTokens, type SignedInCaller } from "./session-tokens.js";

export interface CloudbaseDialectOptions {
  engine: Engine;
  /** dev mode: the legacy captcha page may send its answer to any address (captcha-page.ts) */
  devMode: boolean;
}

/** DESIGN.md "Purposes and account rules", CloudBase rows. */
const RULE_OF_TARGET: Record<Target, AccountRule> = {
  ANY: "any",
  USER: "must_exist",
  NOT_USER: "must_not_exist",
  CUR_USER: "own_contact",
};
const PURPOSE_OF_USAGE: Record<Usage, Purpose> = {
  REGISTER: "sign_up",
  SIGN_IN: "sign_in",
  PASSWORD_RESET: "reset_password",
  EMAIL_ADDRESS_CHANGE: "change_contact",
  PHONE_NUMBER_CHANGE: "change_contact",
};
// A send without `usage` is CloudBase's log-in-or-register flow: its token redeems at either step.
// CloudBase's documented "bind a phone or email" flow sends without `usage` too, so the token also
// binds the contact it proves (`user/contact`, which demands a sudo token besides).
const NO_USAGE_PURPOSE: Purpose = "sign_in";
const NO_USAGE_TOKEN_PURPOSES: Purpose[] = ["sign_in", "sign_up", "bind_contact"];

const DEVICE_ID_PATTERN = /^[\x21-\x7e]{1,128}$/;
const BEARER_PATTERN = /^Bearer\s+(\S{1,4096})$/i;
const BASIC_PATTERN = /^Basic\s+([A-Za-z0-9+/]{1,1024}={0,2})$/i;

interface Contact {
  channel: Channel;
  raw: string;
  field: "phone_number" | "email";
}

/** A contact as checked and normalised (E.164, a lower-cased domain). */
type ProvenContact = Contact & { address: string };

/**
 * The Tencent CloudBase auth v1 face (COMPANION-APIS.md section 2): send, verify, sign-up, sign-in,
 * password reset, tokens, the signed-in user (sudo, contact, password) and the image captcha.
 * Thin handlers: parse with the schema, one core call (the account steps of `account-steps.ts`),
 * render with the CloudBase error map.
 */
/** Every CloudBase path starts with it; what the router refuses under it is answered in CloudBase's shape. */
export const CLOUDBASE_PREFIX = "/auth/v1";

export async function cloudbaseDialect(
  fastify: FastifyInstance,
  options: CloudbaseDialectOptions,
): Promise<void> {
  // Registered under its prefix so unknown /auth/v1 paths answer in the CloudBase shape too.
  await fastify.register(cloudbaseRoutes, { ...options, prefix: CLOUDBASE_PREFIX });
}

async function cloudbaseRoutes(fastify: FastifyInstance, options: CloudbaseDialectOptions): Promise<void> {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  const { engine } = options;
  const tokens = createSessionTokens(engine);
  const parseOptions = (field: string) => ({ defaultCountry: engine.deps.defaultCountry, field });
  /** A route's schema: its body, the `client_id` query every call may carry, its reply and errors. */
  const bodySchema = <Body, Reply>(body: Body, reply: Reply) => ({
    body,
    querystring: ClientQuery,
    response: { 200: reply, ...errorResponses },
  });
  /** A `verification_token` that must prove `contact`, for one of `purposes`. */
  const tokenProof = (
    tenant: App,
    token: string,
    purposes: Purpose[],
    contact: ProvenContact,
  ): ContactProof => ({
    token: {
      app: tenant,
      token,
      purposes,
      recipient: { channel: contact.channel, address: contact.address },
      tokenField: "verification_token",
    },
  });

  app.setErrorHandler(answerErrorsWith(renderCloudbaseError));
  refuseMalformedText(app);
  app.setNotFoundHandler((request, reply) => {
    const { status, body } = CLOUDBASE_ROUTE_NOT_FOUND;
    countRefusal(request, "cloudbase", "ROUTE_NOT_FOUND");
    return reply.code(status).send(body);
  });
  // The captcha and sign-out calls are documented with an empty body; clients still send
  // `Content-Type: application/json` with it, which Fastify would refuse. A refused body says what
  // is wrong with it (a __proto__ key, a Content-Encoding), as the root's parser does
  // (shared/body-parsers.ts).
  const jsonParser = wordingJsonRefusals(app.getDefaultJsonParser("error", "error"));
  const readJson: FastifyBodyParser<string> = (request, body, done) => {
    if (body.trim() === "") {
      done(null, {});
      return;
    }
    jsonParser(request, body, done);
  };
  app.removeContentTypeParser("application/json");
  app.addContentTypeParser("application/json", { parseAs: "string" }, refusingEncodedBodies(readJson));
  // The SDK's default request posts `JSON.stringify(body)` through fetch with no Content-Type, which
  // browsers label text/plain, and Tencent's own HTTP examples post it with curl's --data-raw and no
  // Content-Type, which curl labels application/x-www-form-urlencoded. Either body is read as JSON
  // only beside the SDK's x-device-id: the header makes a cross-site request wait for a CORS
  // preflight, so the text/plain or form that any page may post cross-site without one (a no-cors
  // fetch, a form: see the page's own form parser in captcha-page.ts) is still never read as JSON.
  // Not x-request-id, which the SDK sends too: front proxies add that one to every request. And
  // never a request the browser says it sent without CORS (Sec-Fetch-Mode, which no page can set).
  // Otherwise a route that reads a body refuses it as it would any other media type ("Content-Type
  // must be application/json"), and one that reads none (captcha/data) ignores it. A compressed
  // body is refused before any of that, as under application/json.
  const parseJsonBesideDeviceId = refusingEncodedBodies(
    corsOnlyBodyParser(
      (request) => headerValue(request, "x-device-id") !== undefined,
      (request, body, done) => readJson(request, body, done),
    ),
  );
  for (const contentType of ["text/plain", "application/x-www-form-urlencoded"]) {
    app.removeContentTypeParser(contentType);
    app.addContentTypeParser(contentType, { parseAs: "string" }, parseJsonBesideDeviceId);
  }

  /**
   * `client_id` from the query, an x-client-id / client_id header, the body, or the username of a
   * Basic header, in that order. Only text is handed on: a query read before the route's schema
   * checked it (the send's onRequest) may hold an array, a repeated `client_id`, which names no
   * app here (the schema then refuses it).
   */
  function clientIdOf(request: FastifyRequest, bodyClientId?: string): string | undefined {
    const fromQuery = (request.query as { client_id?: unknown } | undefined)?.client_id;
    if (fromQuery !== undefined) return typeof fromQuery === "string" ? fromQuery : undefined;
    return (
      headerValue(request, "x-client-id") ??
      headerValue(request, "client_id") ??
      bodyClientId ??
      basicClientIdOf(request)
    );
  }

  function bearerOf(request: FastifyRequest): string | undefined {
    const header = request.headers.authorization;
    if (header === undefined) return undefined;
    const match = BEARER_PATTERN.exec(header);
    if (!match)
      throw new OtpError("UNAUTHENTICATED", { message: "Authorization must be Bearer <access_token>" });
    return match[1] as string;
  }

  async function signedIn(request: FastifyRequest, bodyClientId?: string): Promise<SignedInCaller> {
    const accessToken = bearerOf(request);
    if (accessToken === undefined) {
      throw new OtpError("UNAUTHENTICATED", { message: "Authorization: Bearer <access_token> is required" });
    }
    const caller = await tokens.authenticate(accessToken, clientIdOf(request, bodyClientId));
    servedApp(request, caller.app);
    return caller;
  }

  /**
   * The app of an anonymous call. A logged-in SDK sends even anonymous-looking calls (a send)
   * with its credentials and no `client_id`; then the access token names the app. Server-side
   * clients authorize with a publishable key instead (COMPANION-APIS.md 2, common headers): a
   * Bearer that is not a verifyd access token names nothing and is ignored, since no user is
   * authorized here; the calls that need one go through `signedIn`, which refuses it.
   */
  async function appOf(request: FastifyRequest, bodyClientId?: string): Promise<App> {
    const clientId = clientIdOf(request, bodyClientId);
    if (clientId !== undefined) return servedApp(request, await tokens.appNamed(clientId));
    const bearer = BEARER_PATTERN.exec(request.headers.authorization ?? "")?.[1];
    const appOfToken = bearer === undefined ? null : await tokens.appOfAccessToken(bearer);
    return servedApp(request, appOfToken ?? (await tokens.appNamed(undefined)));
  }

  /** The contact a body names, checked and normalised, for the token that must prove it. */
  function provenContact(body: {
    phone_number?: string | null | undefined;
    email?: string | null | undefined;
  }): ProvenContact {
    const contact = contactOf(body);
    requireCountryPrefix(contact);
    const { address } = parseRecipient(contact.channel, contact.raw, parseOptions(contact.field));
    return { ...contact, address };
  }

  app.post(
    "/verification",
    {
      schema: bodySchema(SendBody, SendReply),
      // Its rate limits are send refusals, worded as the seed words them.
      errorHandler: answerErrorsWith((error, request, reply) =>
        renderCloudbaseError(error, request, reply, SENDING_CODE),
      ),
      // A client the risk rules already ask for a captcha is answered before its body is read, as
      // on the native API: this face is called by browsers directly, so it is where a flood lands.
      // Only when the app is known without the body (client_id in the query or a header, cached)
      // and the caller is anonymous; everything else is decided by the handler.
      onRequest: (request, reply, done) => {
        const clientId = clientIdOf(request);
        const tenant =
          clientId === undefined || request.headers.authorization !== undefined
            ? undefined
            : engine.apps.peekByClientId(clientId);
        // An app this face does not serve is refused as unknown by the handler.
        if (!tenant?.faces.includes("cloudbase")) return done();
        servedApp(request, tenant);
        let refusal: Error | null;
        try {
          refusal = engine.precheckSendRisk({
            app: tenant,
            face: "cloudbase",
            clientIp: request.ip,
            captchaToken: captchaTokenOf(request),
          });
        } catch (error) {
          refusal = error as Error;
        }
        // Answered here, not passed to `done`, so a flood skips Fastify's error path (see the
        // native face's `renderProblem`).
        if (refusal) return void renderCloudbaseError(refusal, request, reply, SENDING_CODE);
        done();
      },
    },
    async (request) => {
      const body = request.body;
      const target = body.target ?? "ANY";
      const contact = contactOf(body);
      if (body.usage === "EMAIL_ADDRESS_CHANGE" && contact.channel !== "email") {
        throw invalidField("usage", "EMAIL_ADDRESS_CHANGE codes go to an email");
      }
      if (body.usage === "PHONE_NUMBER_CHANGE" && contact.channel !== "sms") {
        throw invalidField("usage", "PHONE_NUMBER_CHANGE codes go to a phone_number");
      }
      // CUR_USER sends to the caller's own contact: the given value only picks the channel (the SDK
      // may pass the masked value it shows), so it is not parsed.
      const caller = target === "CUR_USER" ? await signedIn(request, body.client_id) : undefined;
      if (!caller) requireCountryPrefix(contact);
      const tenant = caller?.app ?? (await appOf(request, body.client_id));
      const result = await engine.sendCode({
        app: tenant,
        channel: contact.channel,
        to: caller ? undefined : contact.raw,
        toField: contact.field,
        purpose: body.usage ? PURPOSE_OF_USAGE[body.usage] : NO_USAGE_PURPOSE,
        rule: RULE_OF_TARGET[target],
        ...(body.usage ? {} : { tokenPurposes: NO_USAGE_TOKEN_PURPOSES }),
        locale: body.locale,
        accountId: caller?.account.id,
        clientIp: request.ip,
        deviceId: deviceIdOf(request),
        face: "cloudbase",
        captchaToken: captchaTokenOf(request),
        // The 2022 SDK sends the pass it cached with every call until it expires (COMPANION-APIS.md 2.5).
        passMayBeStale: true,
      });
      if (!tenant.revealAccountExistence) {
        // Omitted rather than false: CloudBase clients read "absent" as "go to sign-up", and a
        // sign-up for an existing account answers already_exists without spending the token.
        return { verification_id: result.record.id, expires_in: result.expiresInSeconds };
      }
      // ANY does not look the account up; the answer promises is_user, so it is looked up here.
      const isUser =
        result.accountExists ??
        (await engine.accounts.findByContact(tenant, contact.channel, result.recipient.address)) !== null;
      return { verification_id: result.record.id, expires_in: result.expiresInSeconds, is_user: isUser };
    },
  );

  app.post("/verification/verify", { schema: bodySchema(VerifyBody, VerifyReply) }, async (request) => {
    const tenant = await appOf(request, request.body.client_id);
    const result = await engine.checkCode({
      app: tenant,
      target: { id: request.body.verification_id },
      code: request.body.verification_code,
      codeField: "verification_code",
    });
    return {
      verification_token: result.token as string,
      expires_in: result.tokenExpiresInSeconds as number,
    };
  });

  app.post("/signup", { schema: bodySchema(SignUpBody, Credentials) }, async (request) => {
    const body = request.body;
    const tenant = await appOf(request, body.client_id);
    const contact = provenContact(body);
    const profile: Record<string, string> = {};
    for (const key of ["name", "gender", "picture", "locale"] as const) {
      const value = body[key];
      if (value !== undefined) profile[key] = value;
    }
    // CloudBase clients that cannot see is_user try sign-up first, then sign-in: a sign-up refused
    // for a taken contact or username keeps its proof, and a token's even when it lost a race for
    // the username (engine.signUp).
    const account = await engine.signUp({
      app: tenant,
      proof: signUpProofOf(tenant, body, contact),
      username: body.username,
      password: body.password,
      profile,
      fields: { contact: contact.field, username: "username" },
    });
    return tokens.issue(tenant, account);
  });

  /**
   * What proves the contact a sign-up names: a `verification_token`, or a `verification_code` of
   * the contact's sign-up code (COMPANION-APIS.md 2.4 accepts either). With both, as CloudBase's
   * docs call `signUp({phone_number, verification_code, verification_token, ...})`, the token
   * decides: the code is the one /verification/verify already spent to earn it.
   */
  function signUpProofOf(
    tenant: App,
    body: { verification_token?: string | undefined; verification_code?: string | undefined },
    contact: ProvenContact,
  ): ContactProof {
    const { verification_token: token, verification_code: code } = body;
    if (token !== undefined) return tokenProof(tenant, token, ["sign_up"], contact);
    if (code === undefined) {
      throw invalidField("verification_token", "Pass verification_token or verification_code");
    }
    const target = {
      channel: contact.channel,
      to: contact.raw,
      purpose: "sign_up" as const,
      toField: contact.field,
    };
    return { code: { app: tenant, target, code, codeField: "verification_code" } };
  }

  app.post("/signin", { schema: bodySchema(SignInBody, Credentials) }, async (request) => {
    const body = request.body;
    const tenant = await appOf(request, body.client_id);
    if (body.verification_token !== undefined) {
      // The token decides. CloudBase's docs and @cloudbase/oauth call
      // `signIn({username: phoneNumber, verification_token})`, so a `username` (or a leftover
      // `verification_code`) beside it is ignored: the token already names the contact. Only a
      // password is refused with it, as the caller would think it was checked.
      if (body.password !== undefined) {
        throw invalidField("verification_token", "Pass verification_token or password, not both");
      }
      const accountOf = async (verified: TokenRecord) => {
        const account = await engine.accounts.findByContact(tenant, verified.channel, verified.to);
        if (!account) throw new OtpError("ACCOUNT_NOT_FOUND");
        return account;
      };
      const token = await engine.redeemToken({
        app: tenant,
        token: body.verification_token,
        purposes: ["sign_in"],
        tokenField: "verification_token",
        // Looked up before the token is spent too: a client that tries sign-in before sign-up
        // keeps the verification for the sign-up (as sign-up keeps it for sign-in).
        beforeSpending: async (verified) => {
          await accountOf(verified);
        },
      });
      return tokens.issue(tenant, await accountOf(token));
    }
    if (body.username === undefined) {
      throw invalidField("username", "Pass verification_token, or username and password");
    }
    if (body.password === undefined) throw invalidField("password", "password is required");
    const { account, name } = await loginAccount(tenant, body.username);
    if (!account) return engine.accounts.refuseUnknownLogin(tenant, name, body.password, request.ip);
    await engine.accounts.verifyPasswordLogin(tenant, account, body.password, request.ip);
    return tokens.issue(tenant, account);
  });

  /**
   * The account a sign-in's `username` names, and the name it was looked up by (an unknown one is
   * locked out by it, as an account is). An "@" makes it an email and a leading "+" a phone
   * number, never a username.
   */
  async function loginAccount(
    tenant: App,
    username: string,
  ): Promise<{ account: Account | null; name: LoginName }> {
    if (username.includes("@") || username.startsWith("+")) {
      const recipient = parseRecipient(
        username.includes("@") ? "email" : "sms",
        username,
        parseOptions("username"),
      );
      const account = await engine.accounts.findByContact(tenant, recipient.channel, recipient.address);
      return { account, name: recipient };
    }
    return { account: await engine.accounts.findByUsername(tenant, username), name: { username } };
  }

  app.post("/token", { schema: bodySchema(TokenBody, Credentials) }, async (request) => {
    const tenant = servedApp(request, await tokens.appNamed(clientIdOf(request, request.body.client_id)));
    return tokens.refresh(tenant, request.body.refresh_token);
  });

  app.get(
    "/user/me",
    { schema: { querystring: ClientQuery, response: { 200: UserReply, ...errorResponses } } },
    async (request) => {
      const caller = await signedIn(request);
      return userView(caller.account);
    },
  );

  app.post(
    "/user/signout",
    { schema: { querystring: ClientQuery, response: { 200: EmptyReply, ...errorResponses } } },
    async (request) => {
      await tokens.signOut(await signedIn(request));
      return {};
    },
  );

  app.post("/reset", { schema: bodySchema(ResetBody, EmptyReply) }, async (request) => {
    const { body } = request;
    const tenant = await appOf(request, body.client_id);
    const contact = provenContact(body);
    await engine.resetPassword({
      app: tenant,
      password: body.new_password,
      proof: tokenProof(tenant, body.verification_token, ["reset_password"], contact),
    });
    return {};
  });

  app.post("/user/sudo", { schema: bodySchema(SudoBody, SudoReply) }, async (request) => {
    const { password, verification_token: token, client_id: clientId } = request.body;
    const caller = await signedIn(request, clientId);
    if ((password === undefined) === (token === undefined)) {
      throw invalidField("body", "Pass password or verification_token");
    }
    // CloudBase's rule (the SDK's SudoRequest): once a phone is bound, only a verification token
    // of the account's own contact re-verifies, so a leaked password alone does not open sudo. It
    // is this face's rule: the Fresns face of the same app edits with the current password.
    if (password !== undefined && caller.account.phone !== undefined) {
      throw invalidField(
        "verification_token",
        "This account has a phone number: re-verify with a verification_token of a code sent to it",
      );
    }
    await engine.reverify({
      app: caller.app,
      account: caller.account,
      proof: password !== undefined ? { password } : { token: { token: token as string } },
      clientIp: request.ip,
    });
    return tokens.issueSudo(caller);
  });

  app.patch("/user/contact", { schema: bodySchema(ContactBody, EmptyReply) }, async (request) => {
    const { body } = request;
    const caller = await signedIn(request, body.client_id);
    await tokens.requireSudo(caller, body.sudo_token);
    const contact = provenContact(body);
    await engine.changeContact({
      app: caller.app,
      account: caller.account,
      field: contact.field,
      // EMAIL_ADDRESS_CHANGE / PHONE_NUMBER_CHANGE sends; bind_contact from the native API
      proof: tokenProof(caller.app, body.verification_token, ["change_contact", "bind_contact"], contact),
    });
    return {};
  });

  app.patch("/user/password", { schema: bodySchema(SetPasswordBody, EmptyReply) }, async (request) => {
    const { body } = request;
    const caller = await signedIn(request, body.client_id);
    await tokens.requireSudo(caller, body.sudo_token);
    // A new password ends the account's other sessions; the caller's stays. The sudo token is
    // not spent by it, so the core bounds such changes per account.
    await engine.accounts.changePasswordBySession(caller.account, body.new_password, {
      keepSessions: [caller.sessionId],
    });
    return {};
  });

  app.post("/revoke", { schema: bodySchema(RevokeBody, EmptyReply) }, async (request) => {
    await tokens.revoke(request.body.token, clientIdOf(request, request.body.client_id));
    return {};
  });

  registerLegacyCaptchaFlow(app, {
    engine,
    devMode: options.devMode,
    appOf,
    deviceIdOf,
    prefix: CLOUDBASE_PREFIX,
  });

  app.post(
    "/captcha/data",
    { schema: { querystring: ClientQuery, response: { 200: CaptchaDataReply, ...errorResponses } } },
    async (request) => {
      const tenant = await appOf(request);
      // Before the draw is counted: another site's page must not spend its visitors' draws.
      refuseDrawnElsewhere(request, "fetch", (origin) => isAppOrigin(tenant, origin, options.devMode));
      const challenge = await engine.captcha.createChallenge(tenant, "image", request.ip);
      if (challenge.kind !== "image") throw new Error("an image challenge was asked for");
      return {
        // A GIF data URI, the format CloudBase documents.
        data: challenge.imageDataUri,
        type: "image" as const,
        token: challenge.token,
        expires_in: challenge.expiresInSeconds,
      };
    },
  );

  app.post(
    "/captcha/data/verify",
    { schema: bodySchema(CaptchaVerifyBody, CaptchaVerifyReply) },
    async (request) => {
      const tenant = await appOf(request, request.body.client_id);
      const pass = await engine.captcha.solve(tenant, request.body.token, request.body.key, {
        kind: "image",
        clientIp: request.ip,
      });
      return { captcha_token: pass.passToken, expires_in: pass.expiresInSeconds };
    },
  );

  function userView(account: Account) {
    const { profile } = account;
    return {
      sub: account.id,
      ...(account.username ? { username: account.username } : {}),
      ...(profile.name ? { name: profile.name } : {}),
      ...(profile.picture ? { picture: profile.picture } : {}),
      ...(profile.gender ? { gender: profile.gender } : {}),
      ...(profile.locale ? { locale: profile.locale } : {}),
      // Contacts are set only from a redeemed verification token, so they are verified.
      ...(account.email ? { email: account.email, email_verified: true } : {}),
      ...(account.phone ? { phone_number: cloudbasePhone(account.phone), phone_number_verified: true } : {}),
      created_at: new Date(account.createdAtMs).toISOString(),
    };
  }

  /** E.164 -> CloudBase's "+<country code> <number>". */
  function cloudbasePhone(e164: string): string {
    try {
      const { callingCode } = parseRecipient("sms", e164, parseOptions("phone_number"));
      return callingCode ? `+${callingCode} ${e164.slice(1 + callingCode.length)}` : e164;
    } catch {
      return e164;
    }
  }
}

/** `phone_number` xor `email`, as the seed demands. */
function contactOf(body: {
  phone_number?: string | null | undefined;
  email?: string | null | undefined;
}): Contact {
  // An empty or null one is absent: the SDK's ResetPasswordRequest type declares both as strings.
  const phone = body.phone_number || undefined;
  const email = body.email || undefined;
  if (phone !== undefined && email !== undefined) {
    throw invalidField("body", "Pass phone_number or email, not both");
  }
  if (phone !== undefined) return { channel: "sms", raw: phone, field: "phone_number" };
  if (email !== undefined) return { channel: "email", raw: email, field: "email" };
  throw invalidField("body", "Pass phone_number or email");
}

/** CloudBase numbers are international: "+86 13800138000". A national number is refused. */
function requireCountryPrefix(contact: Contact): void {
  if (contact.channel === "sms" && !contact.raw.trimStart().startsWith("+")) {
    throw invalidField("phone_number", "phone_number needs a +<country code> prefix");
  }
}

/**
 * The pass a send presents, if any. What captcha/init answers a client that needs no captcha
 * (`NO_CAPTCHA_NEEDED`) stands for none: never a pass to judge, nor a widget token to ask a
 * vendor about.
 */
function captchaTokenOf(request: FastifyRequest): string | undefined {
  const query = request.query as { captcha_token?: string } | undefined;
  const token = headerValue(request, "x-captcha-token") ?? query?.captcha_token;
  return token === NO_CAPTCHA_NEEDED ? undefined : token;
}

function deviceIdOf(request: FastifyRequest): string | undefined {
  const value = headerValue(request, "x-device-id");
  if (value !== undefined && !DEVICE_ID_PATTERN.test(value)) {
    throw invalidField("x-device-id", "x-device-id must be 1-128 printable ASCII characters");
  }
  return value;
}

/**
 * The username of a `Basic client_id:client_secret` header, CloudBase's server-side credentials.
 * The secret is not checked: it authorizes no user here, and the client_id it comes with is as
 * public as the `client_id` query parameter it stands in for.
 */
function basicClientIdOf(request: FastifyRequest): string | undefined {
  const match = BASIC_PATTERN.exec(request.headers.authorization ?? "");
  if (!match) return undefined;
  const credentials = Buffer.from(match[1] as string, "base64").toString("utf8");
  const colon = credentials.indexOf(":");
  // Whatever its length: one no app can have is an unknown client (the app directory judges it),
  // as it is in the query; read as absent, the request was served by the bearer's app or `default`.
  return colon > 0 ? credentials.slice(0, colon) : undefined;
}

function headerValue(request: FastifyRequest, name: string): string | undefined {
  const value = request.headers[name];
  return typeof value === "string" && value !== "" ? value : undefined;
}
