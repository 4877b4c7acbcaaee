import { isIP } from "node:net";
import { errorCodes, type FastifyInstance, type FastifyReply, type FastifyRequest } from "fastify";
import { getCountries, getCountryCallingCode } from "libphonenumber-js/max";
import { contactOf } from "../../../core/accounts/account-rules.js";
import type { IssuedSession } from "../../../core/accounts/account-service.js";
import type { EditAccountInput } from "../../../core/accounts/account-steps.js";
import { MAX_PASSWORD_CHARACTERS } from "../../../core/accounts/passwords.js";
import { sessionIdOf } from "../../../core/accounts/session-id.js";
import { lookupSession, type SessionLookup } from "../../../core/accounts/session-lookup.js";
import { DEFAULT_APP_ID } from "../../../core/apps/apps.js";
import type { Engine } from "../../../core/engine.js";
import { isOtpError, OtpError } from "../../../core/errors.js";
import { parseRecipient } from "../../../core/recipients.js";
import type { Account, AccountRule, App, Channel, Purpose } from "../../../core/types.js";
import type { CheckCodeInput, CheckTarget } from "../../../core/verification/check-code.js";
import { answerErrorsWith, setRetryAfter, toOtpError } from "../../problem.js";
import { answeredBug, answeredError, countRefusal, servedApp } from "../../shared/answered-errors.js";
import { refusingEncodedBodies } from "../../shared/body-parsers.js";
import { corsOnlyBodyParser } from "../../shared/cors-only-body.js";
import { refuseMalformedText } from "../../shared/malformed-text.js";
import { clientAddressSpokenFor, type TrustedPeers } from "../../shared/trusted-peers.js";
import { accountDataView, sessionTokenView, uidOf, userSessionTokenView, userView } from "./account-view.js";
import { type FresnsLang, FresnsRefusal, fresnsCodeOf, fresnsMessage } from "./error-map.js";
import {
  ApplyDeleteBody,
  type BodySpec,
  documentBody,
  EditBody,
  FresnsHeaders,
  integerOf,
  invalidInput,
  LoginBody,
  RegisterBody,
  ResetPasswordBody,
  SendVerifyCodeBody,
  UserAuthBody,
  VerifyIdentityBody,
  validateBody,
  validationMessage,
} from "./schemas.js";
import { fresnsSignature, SIGNED_HEADERS, signatureMatches, timestampFresh } from "./signature.js";

/** "1 per minute and 5 per 10 minutes per account" (COMPANION-APIS.md 1.1, the documented figures). */
const FRESNS_SEND_LIMITS = [
  { limit: 1, windowSeconds: 60 },
  { limit: 5, windowSeconds: 600 },
];

export interface FresnsDialectOptions {
  engine: Engine;
  /**
   * Email domains answered with 34110 (subdomains included). Fresns asks a web service; verifyd
   * makes no outbound call on the request path, so it reads a configured list. Default: none.
   */
  disposableEmailDomains?: readonly string[];
  /** VERIFYD_TRUST_PROXY: peers whose device info may name the client's address */
  trustedProxies: TrustedPeers;
}

/** What the hooks learn about a request before its handler runs. */
interface FresnsContext {
  lang: FresnsLang;
  /** X-Fresns-Client-Lang-Tag when well formed: the locale of the message template */
  locale: string | undefined;
  timezone: string | undefined;
  app?: App;
  /** the account of verified X-Fresns-Aid + X-Fresns-Aid-Token headers */
  account?: Account;
  /** that login's session: the X-Fresns-Aid-Token and when it ends */
  session?: IssuedSession;
  /** the channel the request is about, for codes Fresns has per channel (34205 / 34206) */
  channel?: Channel;
}

/** DESIGN.md "Purposes and account rules": Fresns templateId 1–8. */
const PURPOSE_BY_TEMPLATE: Record<number, Purpose> = {
  1: "generic",
  2: "sign_up",
  3: "change_contact",
  4: "bind_contact",
  5: "reset_password",
  6: "reset_payment_password",
  7: "sign_in",
  8: "delete_account",
};

/**
 * verify-identity checks a code of any template (Fresns filters by none), most likely first: the
 * identity checks before edit (4, 5, 6) and delete (8).
 */
const IDENTITY_PURPOSES: Purpose[] = [
  "bind_contact",
  "reset_password",
  "reset_payment_password",
  "delete_account",
  "generic",
  "change_contact",
  "sign_in",
  "sign_up",
];

// Fresns tokens may be permanent; verifyd's sessions always end. 30 days is what a "remember me"
// login usually lasts.
const SESSION_TTL_SECONDS = 30 * 86_400;
const MAX_AID_LENGTH = 64;
/** Fresns's platforms are numbered 1–11 (COMPANION-APIS.md 1.4). */
const MAX_PLATFORM_ID = 11;
const MAX_TOKEN_LENGTH = 256;
const LOCALE_PATTERN = /^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8}){0,3}$/;
const BASE64_PATTERN = /^[A-Za-z0-9+/]+={0,2}$/;
const PHONE_DIGITS_PATTERN = /^\d{1,20}$/;
// The shape Laravel's `email` rule accepts; the core's parser then decides deliverability (34101).
const EMAIL_PATTERN = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;
// CloudBase's schema refuses a password under 6 characters; Fresns's own default floor is the same.
const MIN_NEW_PASSWORD_CHARACTERS = 6;
const CALLING_CODES = new Set(getCountries().map((country) => getCountryCallingCode(country) as string));

const SIGNED_HEADER_KEYS = SIGNED_HEADERS.map((name) => [name, name.toLowerCase()] as const);
const PREFIXES = ["/api/v2", "/fresns-api/v1"] as const;

/** True for a path the Fresns face answers (IDaaS's `/api/v2/sdk` shares the first prefix). */
export function isFresnsPath(url: string): boolean {
  return (url.startsWith("/api/v2/") && !url.startsWith("/api/v2/sdk/")) || url.startsWith("/fresns-api/v1/");
}
const SendDoc = documentBody(SendVerifyCodeBody);
const RegisterDoc = documentBody(RegisterBody);
const LoginDoc = documentBody(LoginBody);
const ResetPasswordDoc = documentBody(ResetPasswordBody);
const VerifyIdentityDoc = documentBody(VerifyIdentityBody);
const EditDoc = documentBody(EditBody);
const ApplyDeleteDoc = documentBody(ApplyDeleteBody);
const UserAuthDoc = documentBody(UserAuthBody);

/** The Fresns release this face follows (its code messages and DTOs). */
const FRESNS_VERSION = "2.21.4";

const contexts = new WeakMap<FastifyRequest, FresnsContext>();

/**
 * The Fresns-compatible face (COMPANION-APIS.md section 1): send-verify-code and the account
 * endpoints that consume its codes. Everything answers HTTP 200 with `{code, message, data}`.
 */
export async function fresnsDialect(fastify: FastifyInstance, options: FresnsDialectOptions): Promise<void> {
  const { engine } = options;
  const disposable = new Set((options.disposableEmailDomains ?? []).map((domain) => domain.toLowerCase()));

  // The route schemas document the wire for /docs; the bodies are validated by `validateBody`,
  // which follows Laravel's order, messages and numeric strings as Fresns clients expect.
  fastify.setValidatorCompiler(() => () => true);
  // Both parsers refuse a compressed body (none is decoded here), in the 30000 envelope.
  fastify.removeContentTypeParser("application/json");
  fastify.addContentTypeParser(
    "application/json",
    { parseAs: "string" },
    refusingEncodedBodies<string>((request, body, done) => {
      if (body.trim() === "") return done(null, {});
      let parsed: unknown;
      try {
        parsed = JSON.parse(body);
      } catch {
        // On a path no route serves, refused as what Fastify's parser refuses, so that the path is
        // answered as the unknown route it is (answerErrorsWith), not as a bad body of a route.
        done(
          request.is404
            ? new errorCodes.FST_ERR_CTP_INVALID_JSON_BODY()
            : invalidInput(contextOf(request).lang, "json", "body"),
          undefined,
        );
        return;
      }
      done(null, parsed);
    }),
  );
  // Laravel reads form posts as well as JSON; some Fresns clients post forms. Only beside an
  // X-Fresns-* header, as every Fresns client sends (its app id, its language): an HTML form on
  // any site, which waits for no CORS preflight, made each visitor's browser send codes from the
  // visitor's address. Never when the browser says it sent the form without CORS.
  fastify.addContentTypeParser(
    "application/x-www-form-urlencoded",
    { parseAs: "string" },
    refusingEncodedBodies(
      corsOnlyBodyParser(carriesFresnsHeader, (_request, body, done) =>
        done(null, Object.fromEntries(new URLSearchParams(body))),
      ),
    ),
  );
  fastify.setErrorHandler(answerErrorsWith(renderFresnsError));
  refuseMalformedText(fastify);
  // Every Fresns answer names its API (COMPANION-APIS.md 1.6); the version is the one whose
  // messages and DTOs this face follows.
  fastify.addHook("onSend", (_request, reply, payload, done) => {
    reply
      .header("fresns-version", FRESNS_VERSION)
      .header("fresns-api", "v2")
      .header("fresns-author", "Jevan Tang");
    done(null, payload);
  });

  fastify.addHook("onRequest", async (request) => {
    const langTag = header(request, "x-fresns-client-lang-tag");
    const context: FresnsContext = {
      lang: langOf(langTag) ?? "en",
      locale: langTag && LOCALE_PATTERN.test(langTag) ? langTag : undefined,
      timezone: header(request, "x-fresns-client-timezone"),
    };
    contexts.set(request, context);
    // An unknown path is answered before its headers are judged, as Laravel routes before it runs
    // a route's middleware.
    if (request.is404) return;
    const clientId = header(request, "x-fresns-app-id") ?? DEFAULT_APP_ID;
    const app = servedApp(request, await engine.apps.requireByClientId(clientId, "fresns"));
    context.app = app;
    if (langTag === undefined) context.lang = langOf(app.defaultLocale) ?? "en";
    checkHeaderValues(request, context.lang);
    if (app.fresnsSecret) verifySignature(request, app.fresnsSecret, engine.deps.clock.nowMs(), context.lang);
    const login = await sessionLogin(request, app);
    if (login) {
      context.account = login.account;
      context.session = login.session;
    }
  });

  /** The login the Aid headers prove, if any; any Aid or Uid header present must be right. */
  async function sessionLogin(
    request: FastifyRequest,
    app: App,
  ): Promise<{ account: Account; session: IssuedSession } | undefined> {
    const aid = header(request, "x-fresns-aid");
    const uid = header(request, "x-fresns-uid");
    if (aid === undefined) {
      // A user is always a user of a logged-in account.
      if (uid !== undefined) throw new FresnsRefusal(31501);
      return undefined;
    }
    // A bare Aid is not a login: the original trusted it when signatures were off, a hole not copied.
    const aidToken = header(request, "x-fresns-aid-token");
    if (aidToken === undefined) throw new FresnsRefusal(31503);
    const named = aid.length <= MAX_AID_LENGTH ? await engine.accounts.findById(app, aid) : null;
    if (!named) throw new FresnsRefusal(31502);
    // The account as the session check read it: a change this request makes is allowed at its
    // credential version, not at that of the read before it.
    const { account, expiresAtMs } = await requireSessionOf(app, named, aidToken, 31505);
    if (uid !== undefined) {
      if (!/^\d{1,12}$/.test(uid) || Number(uid) !== uidOf(account.id)) throw new FresnsRefusal(31602);
      const uidToken = header(request, "x-fresns-uid-token");
      if (uidToken === undefined) throw new FresnsRefusal(31603);
      await requireSessionOf(app, account, uidToken, 31603);
    }
    return { account, session: { token: aidToken, expiresAtMs } };
  }

  /** A live session of `account`'s: the account as the session check read it, and when it ends. */
  async function requireSessionOf(
    app: App,
    account: Account,
    token: string,
    invalidCode: 31505 | 31603,
  ): Promise<{ account: Account; expiresAtMs: number }> {
    const session: SessionLookup =
      token.length <= MAX_TOKEN_LENGTH
        ? await lookupSession(engine.deps, app, token, "fresns")
        : { kind: "unknown" };
    if (session.kind === "expired" && session.accountId === account.id) throw new FresnsRefusal(31504);
    if (session.kind !== "live" || session.account.id !== account.id) throw new FresnsRefusal(invalidCode);
    return session;
  }

  /** An email account, normalised as the core stores it; `field` names the body field at fault. */
  function emailOf(context: FresnsContext, value: string, field: string): string {
    context.channel = "email";
    if (!EMAIL_PATTERN.test(value)) throw invalidInput(context.lang, "email", field);
    const { address } = parseRecipient("email", value, { defaultCountry: engine.deps.defaultCountry, field });
    // The domain as the core normalised it (no root dot, lower case), and each parent domain, are
    // looked up, so the list may be long without cost.
    const labels = address.slice(address.lastIndexOf("@") + 1).split(".");
    for (let start = 0; start < labels.length - 1; start += 1) {
      if (disposable.has(labels.slice(start).join("."))) throw new FresnsRefusal(34110);
    }
    return address;
  }

  /**
   * A phone account given as calling code + number (Fresns stores `<cc><number>`), as the E.164
   * number the core stores.
   */
  function phoneOf(
    context: FresnsContext,
    value: string,
    countryCode: number | undefined,
    fields: { number: string },
  ): string {
    const { lang } = context;
    context.channel = "sms";
    // Fresns answers a missing calling code from its controller (COMPANION-APIS.md 1.1 step 4),
    // not its DTO: 30001 with the code's own message, not a validator sentence. The bodies of the
    // other routes require their calling code in the rule table, so only a send gets here.
    if (countryCode === undefined) throw new FresnsRefusal(30001);
    if (!PHONE_DIGITS_PATTERN.test(value)) throw invalidInput(lang, "integer", fields.number);
    if (!CALLING_CODES.has(String(countryCode))) throw new FresnsRefusal(34103);
    return parseRecipient("sms", `+${countryCode}${value}`, {
      defaultCountry: engine.deps.defaultCountry,
      field: fields.number,
    }).address;
  }

  /** The address the per-client rules count (see `clientAddressSpokenFor`). */
  function clientIpOf(request: FastifyRequest): string | undefined {
    return clientAddressSpokenFor(request, options.trustedProxies, () => deviceInfoAddress(request));
  }

  /** The `type` + `account` + `countryCode` of register, login and reset-password. */
  function accountOf(
    context: FresnsContext,
    body: { type: string | undefined; account: string | undefined; countryCode: number | undefined },
  ): { channel: Channel; address: string } {
    const account = body.account as string;
    return body.type === "phone"
      ? {
          channel: "sms",
          address: phoneOf(context, account, body.countryCode, { number: "account" }),
        }
      : { channel: "email", address: emailOf(context, account, "account") };
  }

  /** The target of a code sent to the logged-in account's own contact (`codeType` + `verifyCode`). */
  function ownCodeTarget(account: Account, codeType: string | undefined, purpose: Purpose): CheckTarget {
    const channel: Channel = codeType === "sms" ? "sms" : "email";
    const own = contactOf(account, channel);
    // No contact of that channel means no code can have been sent to it.
    if (!own) throw new OtpError("CODE_INVALID", { details: { field: "verifyCode" } });
    return { channel, to: own, purpose };
  }

  for (const url of PREFIXES.map((prefix) => `${prefix}/common/send-verify-code`)) {
    fastify.post(
      url,
      {
        schema: {
          summary: "Send a verification code",
          headers: FresnsHeaders,
          body: SendDoc,
        },
      },
      async (request) => {
        const context = contextOf(request);
        const body = validateBody(SendVerifyCodeBody, request.body, context.lang);
        const channel: Channel = body.type === "sms" ? "sms" : "email";
        context.channel = channel;
        const useType = body.useType as number;
        // Fresns asks for the login before it reads the recipient (COMPANION-APIS.md 1.1 step 2);
        // the core's account rule still decides what the login allows.
        if (useType === 3 || useType === 4) requireLogin(context);
        const app = context.app as App;
        const account = body.account as string;
        const to =
          useType === 4
            ? undefined
            : channel === "email"
              ? emailOf(context, account, "account")
              : phoneOf(context, account, body.countryCode, { number: "account" });
        await engine.sendCode({
          app,
          channel,
          to,
          purpose: PURPOSE_BY_TEMPLATE[body.templateId as number] as Purpose,
          rule: ruleOf(useType, app),
          locale: context.locale,
          accountId: context.account?.id,
          clientIp: clientIpOf(request),
          // Fresns has no captcha step: a captcha decision comes back as CAPTCHA_REQUIRED -> 33201.
          face: "fresns",
          // The limit Fresns documents, kept even when an app loosens its own recipient rules.
          contractRules: FRESNS_SEND_LIMITS,
          toField: "account",
        });
        return ok(null);
      },
    );
  }

  for (const prefix of PREFIXES) {
    fastify.post(
      `${prefix}/account/register`,
      {
        schema: {
          summary: "Register with a code",
          headers: FresnsHeaders,
          body: RegisterDoc,
        },
      },
      async (request) => {
        const context = contextOf(request);
        const app = context.app as App;
        const body = validateBody(RegisterBody, request.body, context.lang);
        const { channel, address } = accountOf(context, body);
        const password = decodePassword(body.password as string, 34105);
        // Fresns checks the code before it creates the account, so only who holds one learns that
        // the account exists (engine.signUp: a refusal keeps the code).
        const account = await engine
          .signUp({
            app,
            proof: { code: accountCode(app, { channel, address }, "sign_up", body.verifyCode) },
            password,
            profile: { nickname: body.nickname as string },
            fields: { contact: "account" },
          })
          .catch((error: unknown) => {
            // Registration tells a taken account by its own code, not the edit's 34205/34206.
            throw isOtpError(error) && error.code === "ACCOUNT_EXISTS" ? new FresnsRefusal(34204) : error;
          });
        return ok(await signedIn(context, app, account));
      },
    );

    fastify.post(
      `${prefix}/account/login`,
      { schema: { summary: "Log in", headers: FresnsHeaders, body: LoginDoc } },
      async (request) => {
        const context = contextOf(request);
        const app = context.app as App;
        const body = validateBody(LoginBody, request.body, context.lang);
        const { channel, address } = accountOf(context, body);
        const signInCode = accountCode(app, { channel, address }, "sign_in", body.verifyCode);
        const account = await engine.accounts.findByContact(app, channel, address);
        // Fresns "login or register": a right login code for an unknown account creates it, and a
        // wrong one is refused as a known account's is, locked out after as many (34306); elsewhere
        // an unknown account is 31502.
        const unknownIsTold = body.verifyCode === undefined || !app.loginOrRegister;
        if (!account && !unknownIsTold) {
          const loggedIn = await engine.accounts.underUnknownLoginLockout(app, { channel, address }, () =>
            engine.signInWithCode(signInCode),
          );
          return ok(await signedIn(context, app, loggedIn));
        }
        try {
          if (!account) throw new FresnsRefusal(31502);
          if (body.password !== undefined) {
            await engine.accounts.verifyPasswordLogin(
              app,
              account,
              decodePassword(body.password, 34304),
              clientIpOf(request),
            );
          } else {
            // A failed login code counts towards the same 5-per-hour lock as a wrong password.
            await engine.accounts.underLoginLockout(app, account, () => engine.checkCode(signInCode));
          }
        } catch (error) {
          // Where an unknown account is 31502 (Fresns's API), that and a known one's refusal tell
          // whether the account exists: each is a look-up, counted as the send's are, past whose
          // limit both are answered 33201 alike. A store that failed told nothing.
          const refused =
            error instanceof FresnsRefusal || (isOtpError(error) && error.code !== "STORE_UNAVAILABLE");
          if (unknownIsTold && refused) {
            await engine.countAccountLookup(
              { app, face: "fresns", channel, address, purpose: "sign_in", clientIp: clientIpOf(request) },
              account && isOtpError(error)
                ? error
                : new OtpError(account ? "PASSWORD_INVALID" : "ACCOUNT_NOT_FOUND"),
            );
          }
          throw error;
        }
        return ok(await signedIn(context, app, account));
      },
    );

    fastify.put(
      `${prefix}/account/reset-password`,
      {
        schema: {
          summary: "Reset the password with a code",
          headers: FresnsHeaders,
          body: ResetPasswordDoc,
        },
      },
      async (request) => {
        const context = contextOf(request);
        const app = context.app as App;
        const body = validateBody(ResetPasswordBody, request.body, context.lang);
        const { channel, address } = accountOf(context, body);
        const password = decodePassword(body.newPassword as string, 34105);
        // The code first, then the account (34301 when it went since the send): as Fresns orders
        // them, and a refusal keeps the code (engine.resetPassword).
        await engine.resetPassword({
          app,
          proof: { code: accountCode(app, { channel, address }, "reset_password", body.verifyCode) },
          password,
        });
        return ok(null);
      },
    );

    fastify.post(
      `${prefix}/account/verify-identity`,
      {
        schema: {
          summary: "Check a code sent to the account's own contact without consuming it",
          headers: FresnsHeaders,
          body: VerifyIdentityDoc,
        },
      },
      async (request) => {
        const { context, app, account, body } = signedInCall(request, VerifyIdentityBody);
        context.channel = body.type === "sms" ? "sms" : "email";
        // A peek leaves the code for the edit or delete that follows. A right value costs no code
        // an attempt, not even the codes of the other templates it was compared with on the way;
        // a wrong one costs each live code one (it is none of them), as any wrong check does.
        await engine.peekAnyCode({
          app,
          targets: IDENTITY_PURPOSES.map((purpose) => ownCodeTarget(account, body.type, purpose)),
          code: body.verifyCode as string,
          codeField: "verifyCode",
        });
        return ok(null);
      },
    );

    fastify.put(
      `${prefix}/account/edit`,
      {
        schema: {
          summary: "Set or change the email, phone or password",
          headers: FresnsHeaders,
          body: EditDoc,
        },
      },
      async (request) => {
        const { context, app, account, body } = signedInCall(request, EditBody);
        const edits = [
          body.newEmail,
          body.newPhone,
          body.newPassword,
          body.newWalletPassword,
          body.updateLastLoginTime,
          body.disconnectPlatformId,
        ];
        if (edits.every((value) => value === undefined)) throw new FresnsRefusal(30001);
        // verifyd keeps no wallet: refused before any other change is made.
        if (body.newWalletPassword !== undefined) throw new FresnsRefusal(34501);

        // Everything that can refuse the edit is decided before a code is spent or a field is
        // written, so a refused edit changes nothing: written as it went, a new email was saved
        // and both its codes spent before a bad new password refused the rest.
        const codes: EditAccountInput["codes"] = [];
        const contacts: [Channel, string | undefined, "newEmail" | "newPhone"][] = [
          ["email", body.newEmail, "newEmail"],
          ["sms", body.newPhone, "newPhone"],
        ];
        for (const [channel, next, field] of contacts) {
          if (next === undefined) continue;
          const address =
            channel === "email"
              ? emailOf(context, next, field)
              : phoneOf(context, next, body.newCountryCode, { number: field });
          const current = contactOf(account, channel);
          if (current && body.verifyCode === undefined) throw new FresnsRefusal(33202);
          if (current) {
            codes.push({
              code: {
                app,
                target: ownCodeTarget(account, body.codeType, "bind_contact"),
                code: body.verifyCode as string,
                codeField: "verifyCode",
              },
            });
          }
          // Whether another account has the contact is the core's to tell, and only once this
          // code checks (engine.editAccount): asked here first, it answered any logged-in caller
          // with a made-up code whether any address has an account.
          codes.push({
            code: {
              app,
              // Fresns: templateId 3 to change a contact, 4 to set the first one.
              target: { channel, to: address, purpose: current ? "change_contact" : "bind_contact" },
              code: body.newVerifyCode as string,
              codeField: "newVerifyCode",
            },
            newContactField: field,
          });
        }

        let password: string | undefined;
        if (body.newPassword !== undefined) {
          if (body.currentPassword === undefined && body.verifyCode === undefined)
            throw new FresnsRefusal(34111);
          password = decodePassword(body.newPassword, 34105);
          if (body.currentPassword !== undefined) {
            await engine.accounts.verifyPasswordLogin(
              app,
              account,
              decodePassword(body.currentPassword, 34304),
              clientIpOf(request),
            );
          } else {
            codes.push({
              code: {
                app,
                target: ownCodeTarget(account, body.codeType, "reset_password"),
                code: body.verifyCode as string,
                codeField: "verifyCode",
              },
            });
          }
        }

        // Every code is compared before any is spent, then a taken contact told, then every
        // change saved in one write. A new password ends the account's other logins; this one stays.
        await engine
          .editAccount({
            app,
            account,
            codes,
            password,
            keepSessions: provenSessionTokens(request).map(sessionIdOf),
          })
          .catch((error: unknown) => {
            // 34205 or 34206 by the contact that is taken, not by the last one this edit parsed.
            if (isOtpError(error) && error.code === "ACCOUNT_EXISTS" && error.details.field !== undefined)
              context.channel = error.details.field === "newPhone" ? "sms" : "email";
            throw error;
          });
        return ok(null);
      },
    );

    fastify.get(
      `${prefix}/account/detail`,
      { schema: { summary: "The logged-in account", headers: FresnsHeaders } },
      async (request) => {
        const context = contextOf(request);
        return ok(accountDataView(requireLogin(context), context.timezone));
      },
    );

    fastify.post(
      `${prefix}/account/apply-delete`,
      {
        schema: {
          summary: "Ask for the account to be deleted, proven by its password or a code",
          headers: FresnsHeaders,
          body: ApplyDeleteDoc,
        },
      },
      async (request) => {
        const { context, app, account, body } = signedInCall(request, ApplyDeleteBody);
        if (body.password === undefined && body.verifyCode === undefined) throw new FresnsRefusal(34111);
        if (body.password !== undefined) {
          await engine.accounts.verifyPasswordLogin(
            app,
            account,
            decodePassword(body.password, 34304),
            clientIpOf(request),
          );
        } else {
          context.channel = body.codeType === "sms" ? "sms" : "email";
          // Fresns templateId 8, sent with useType 4 to the account's own contact.
          await engine.checkCode({
            app,
            target: ownCodeTarget(account, body.codeType, "delete_account"),
            code: body.verifyCode as string,
            codeField: "verifyCode",
          });
        }
        await engine.accounts.requestDeletion(account);
        // Fresns answers its grace period (`delete_account_todo`, in days) and the date the deletion
        // runs. verifyd runs no deletion of its own (what a request leads to is the operator's), so
        // both are null, as account detail's `waitDeleteDateTime` is, rather than a 0 day that
        // would read as a deletion now.
        return ok({ day: null, dateTime: null });
      },
    );

    fastify.post(
      `${prefix}/account/recall-delete`,
      { schema: { summary: "Withdraw a deletion request", headers: FresnsHeaders } },
      async (request) => {
        await engine.accounts.recallDeletion(requireLogin(contextOf(request)));
        return ok(null);
      },
    );

    fastify.delete(
      `${prefix}/account/logout`,
      { schema: { summary: "End this login session", headers: FresnsHeaders } },
      async (request) => {
        const context = contextOf(request);
        requireLogin(context);
        const app = context.app as App;
        for (const token of provenSessionTokens(request))
          await engine.accounts.revokeSession(app, token, "fresns");
        return ok(null);
      },
    );

    // The call the Fresns clients make right after register or login, for the uid token of the
    // account's user (COMPANION-APIS.md 1.4's X-Fresns-Uid + X-Fresns-Uid-Token).
    fastify.post(
      `${prefix}/user/auth`,
      {
        schema: {
          summary: "Log in as the account's user: its uid token",
          headers: FresnsHeaders,
          body: UserAuthDoc,
        },
      },
      async (request) => {
        const { context, account, body } = signedInCall(request, UserAuthBody);
        const named = body.uidOrUsername as string;
        // Fresns reads digits as a uid, anything else as a username. verifyd cannot tell whose a
        // uid is (it is derived from the account id) and does not say whose a username is: any
        // user but the caller's own is 35201, "not exist or not belong to the current account".
        const own = /^\d+$/.test(named) ? Number(named) === uidOf(account.id) : named === account.username;
        if (!own) throw new FresnsRefusal(35201);
        // The user token is the login's own Aid token, not a new session: verifyd's account has
        // one user and no user password, so a second token would prove nothing the first does
        // not, and would be one more login for logout and a new password to end. The Uid headers
        // check it as a session of the Aid's account (`sessionLogin`), and it ends with the login.
        const session = context.session as IssuedSession;
        return ok({
          sessionToken: userSessionTokenView(account, session, engine.deps.clock.nowMs(), context.timezone),
          detail: userView(account),
        });
      },
    );
  }

  // Unknown paths under the dialect's prefixes answer in its envelope, not the native problem+json.
  for (const prefix of PREFIXES) {
    await fastify.register(
      async (scoped) => {
        scoped.setNotFoundHandler((request, reply) => {
          countRefusal(request, "fresns", "ROUTE_NOT_FOUND");
          return reply.code(404).send({ code: 404, message: "Not Found", data: null });
        });
      },
      { prefix },
    );
  }

  async function signedIn(context: FresnsContext, app: App, account: Account) {
    const session = await engine.accounts.createSession(app, account, SESSION_TTL_SECONDS, "fresns");
    return {
      sessionToken: sessionTokenView(account, session, engine.deps.clock.nowMs(), context.timezone),
      ...accountDataView(account, context.timezone),
    };
  }
}

/** The check of the `verifyCode` sent to the `account` a sign-up, login or reset names. */
function accountCode(
  app: App,
  account: { channel: Channel; address: string },
  purpose: Purpose,
  verifyCode: string | undefined,
): CheckCodeInput {
  return {
    app,
    target: { channel: account.channel, to: account.address, purpose, toField: "account" },
    code: verifyCode as string,
    codeField: "verifyCode",
  };
}

/**
 * The session tokens the login proved: the Aid token, and the Uid token only where a Uid came
 * with it (`sessionLogin`); a Uid token that was not checked is not this caller's.
 */
function provenSessionTokens(request: FastifyRequest): string[] {
  const names =
    header(request, "x-fresns-uid") === undefined
      ? ["x-fresns-aid-token"]
      : ["x-fresns-aid-token", "x-fresns-uid-token"];
  return names.flatMap((name): string[] => {
    const token = header(request, name);
    return token === undefined ? [] : [token];
  });
}

function ok<Data>(data: Data): { code: 0; message: "ok"; data: Data } {
  return { code: 0, message: "ok", data };
}

function contextOf(request: FastifyRequest): FresnsContext {
  let context = contexts.get(request);
  if (!context) {
    context = {
      lang: langOf(header(request, "x-fresns-client-lang-tag")) ?? "en",
      locale: undefined,
      timezone: undefined,
    };
    contexts.set(request, context);
  }
  return context;
}

/**
 * What a route for the logged-in account starts with: its context, app and account (31501
 * without a login, before the body is read, as Fresns's middleware runs first), and its body.
 */
function signedInCall<Spec extends BodySpec>(request: FastifyRequest, spec: Spec) {
  const context = contextOf(request);
  const account = requireLogin(context);
  return { context, app: context.app as App, account, body: validateBody(spec, request.body, context.lang) };
}

function requireLogin(context: FresnsContext): Account {
  if (!context.account) throw new OtpError("LOGIN_REQUIRED");
  return context.account;
}

/** DESIGN.md: useType 1–5 -> account rule; 2 admits new accounts when the app allows login-or-register. */
function ruleOf(useType: number, app: App): AccountRule {
  switch (useType) {
    case 1:
      return "must_not_exist";
    case 2:
      return app.loginOrRegister ? "any" : "must_exist";
    case 3:
      return "logged_in_contact_blank";
    case 4:
      return "own_contact";
    default:
      return "any";
  }
}

/**
 * Fresns sends passwords base64-encoded and decodes them strictly (`base64_decode($p, true)`); a
 * value that is not base64, or decodes to nothing usable, is refused with `code` (34105 where a
 * new password is set, 34304 where one is checked). A new password is also refused shorter than
 * CloudBase's floor: the account signs in on every face with it.
 */
function decodePassword(value: string, code: 34105 | 34304): string {
  // PHP's strict base64_decode skips whitespace anywhere in the value, not only around it.
  const compact = value.replace(/[ \t\r\n\f\v]/g, "");
  if (!BASE64_PATTERN.test(compact)) throw new FresnsRefusal(code);
  const password = Buffer.from(compact, "base64").toString("utf8");
  const shortest = code === 34105 ? MIN_NEW_PASSWORD_CHARACTERS : 1;
  if (
    // counted in characters, as CloudBase's schema counts them (an emoji is one, not two)
    [...password].length < shortest ||
    password.length > MAX_PASSWORD_CHARACTERS ||
    password.includes("\uFFFD")
  ) {
    throw new FresnsRefusal(code);
  }
  return password;
}

// Real device info is a few hundred characters; a longer header is not read.
const MAX_DEVICE_INFO_CHARS = 2_048;

/**
 * The address `X-Fresns-Client-Device-Info` names (base64 of JSON): its `networkIpv4`, else its
 * `networkIpv6`, whichever is an IP address; undefined when there is none or the header is
 * unreadable. Only a claim: see `clientAddressSpokenFor`, which asks for it only from a trusted peer.
 */
function deviceInfoAddress(request: FastifyRequest): string | undefined {
  const value = header(request, "x-fresns-client-device-info");
  if (value === undefined || value.length > MAX_DEVICE_INFO_CHARS) return undefined;
  let info: unknown;
  try {
    info = JSON.parse(Buffer.from(value, "base64").toString("utf8"));
  } catch {
    return undefined; // not base64 JSON: no address named
  }
  if (typeof info !== "object" || info === null) return undefined;
  const { networkIpv4, networkIpv6 } = info as { networkIpv4?: unknown; networkIpv6?: unknown };
  return [networkIpv4, networkIpv6]
    .map((address) => (typeof address === "string" ? address.trim() : ""))
    .find((address) => isIP(address) !== 0);
}

/** A header no page can add to a cross-site request without a CORS preflight. */
function carriesFresnsHeader(request: FastifyRequest): boolean {
  return Object.keys(request.headers).some((name) => name.startsWith("x-fresns-"));
}

function header(request: FastifyRequest, name: string): string | undefined {
  const value = request.headers[name];
  const first = Array.isArray(value) ? value[0] : value;
  return first === undefined || first.trim() === "" ? undefined : first.trim();
}

/** The language of Fresns messages for a tag: en, zh-Hans or zh-Hant; undefined for no tag. */
function langOf(tag: string | undefined): FresnsLang | undefined {
  if (!tag) return undefined;
  const lower = tag.toLowerCase();
  if (!lower.startsWith("zh")) return "en";
  return /hant|-tw|-hk|-mo/.test(lower) ? "zh-Hant" : "zh-Hans";
}

/**
 * The documented value ranges of COMPANION-APIS.md 1.4, checked when the header is present, as
 * Fresns's CheckHeadersDTO checks them (30000 in Laravel's wording): the platform id an integer
 * 1–11, the uid an integer (whose it is, 31602, is the login's check). Not their presence: verifyd
 * serves callers that send only what they need. Nor the device info, which Fresns requires to
 * name an IP address: verifyd reads it only from a trusted peer, and an unreadable one names none.
 */
function checkHeaderValues(request: FastifyRequest, lang: FresnsLang): void {
  const platformHeader = "X-Fresns-Client-Platform-Id";
  const platformId = header(request, "x-fresns-client-platform-id");
  if (platformId !== undefined) {
    const value = integerOf(platformId);
    if (value === null) throw invalidInput(lang, "integer", platformHeader);
    if (value < 1 || value > MAX_PLATFORM_ID) {
      throw invalidInput(lang, "between", platformHeader, { min: 1, max: MAX_PLATFORM_ID });
    }
  }
  const uid = header(request, "x-fresns-uid");
  if (uid !== undefined && integerOf(uid) === null) throw invalidInput(lang, "integer", "X-Fresns-Uid");
}

/** Verifies `X-Fresns-Signature` (COMPANION-APIS.md 1.4): timestamp skew first, then the md5. */
function verifySignature(request: FastifyRequest, secret: string, nowMs: number, lang: FresnsLang): void {
  const timestampHeader = "X-Fresns-Signature-Timestamp";
  const timestamp = header(request, "x-fresns-signature-timestamp");
  if (timestamp === undefined) throw invalidInput(lang, "required", timestampHeader);
  if (!/^\d{10,13}$/.test(timestamp)) {
    throw invalidInput(lang, "digits_between", timestampHeader, { min: 10, max: 13 });
  }
  const signature = header(request, "x-fresns-signature");
  if (signature === undefined) throw invalidInput(lang, "required", "X-Fresns-Signature");
  if (!timestampFresh(timestamp, nowMs)) throw new FresnsRefusal(31303);
  const signed: Partial<Record<(typeof SIGNED_HEADERS)[number], string>> = {};
  for (const [name, lowerCase] of SIGNED_HEADER_KEYS) {
    const value = header(request, lowerCase);
    if (value !== undefined) signed[name] = value;
  }
  if (!signatureMatches(signature, fresnsSignature(signed, secret))) throw new OtpError("SIGNATURE_INVALID");
}

/** The one renderer: HTTP 200 `{code, message, data: null}`; a bug is a 500 with the request id. */
export function renderFresnsError(
  error: unknown,
  request: FastifyRequest,
  reply: FastifyReply,
): FastifyReply {
  const context = contextOf(request);
  if (error instanceof FresnsRefusal) {
    countRefusal(request, "fresns", error.code);
    return reply.code(200).send({ code: error.code, message: error.messageIn(context.lang), data: null });
  }
  const otpError = toOtpError(error, request);
  if (!otpError) {
    const requestId = answeredBug(request, "fresns", error);
    return reply.code(500).send({ code: 500, message: "Unknown Error", data: { requestId } });
  }
  answeredError(request, "fresns", otpError);
  setRetryAfter(reply, otpError);
  const code = fresnsCodeOf(otpError, context.channel);
  // A 30000 from outside the Laravel-style validator (body too large, wrong content type) has no
  // Laravel sentence; the core's English text names the field, the Chinese table message gets it.
  const field = otpError.details.field;
  const message =
    code !== 30000
      ? fresnsMessage(code, context.lang)
      : otpError.code === "CONTACT_MISSING"
        ? validationMessage(context.lang, "required", "account")
        : context.lang === "en"
          ? otpError.message
          : `${fresnsMessage(code, context.lang)}: ${field ?? "body"}`;
  return reply.code(200).send({ code, message, data: null });
}
