import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import Type from "typebox";
import { PASS_TTL_SECONDS } from "../../../core/abuse/captcha-service.js";
import type { Engine } from "../../../core/engine.js";
import { invalidField, OtpError } from "../../../core/errors.js";
import type { App } from "../../../core/types.js";
import { toOtpError } from "../../problem.js";
import { answeredError } from "../../shared/answered-errors.js";
import { refusingEncodedBodies } from "../../shared/body-parsers.js";
import { cloudbaseErrorOf } from "./error-map.js";
import {
  CaptchaInitBody,
  CaptchaInitReply,
  CaptchaPageForm,
  CaptchaPageQuery,
  ClientQuery,
  errorResponses,
} from "./schemas.js";

/** What `captcha/init` answers for a client that needs no captcha: not a pass, only a placeholder. */
export const NO_CAPTCHA_NEEDED = "none";
// The 2022 SDK keeps the token init or the page's redirect gives it for `expires_in` - 10 s, adds
// it to every send meanwhile, and never asks again when a send is refused captcha_invalid (its
// retry misses an await). A pass is good for one send, so the SDK is told 11 s: the send that
// follows uses it at once, and the next one goes back to init, where a client over its threshold
// gets a new page (told the pass's own 600 s, a resend was refused for ten minutes with no page).
const SDK_TOKEN_TTL_SECONDS = 11;

export interface LegacyCaptchaOptions {
  engine: Engine;
  /** dev mode lets an app with no CORS origins send its pages' answers anywhere */
  devMode: boolean;
  /** the app of an anonymous call, as the dialect's other routes pick it */
  appOf: (request: FastifyRequest, bodyClientId?: string) => Promise<App>;
  /** the caller's `x-device-id`, as the send reads it for its risk rules */
  deviceIdOf: (request: FastifyRequest) => string | undefined;
  /** the path these routes are served under (`/auth/v1`), for the page's absolute url */
  prefix: string;
}

// The page the SDK opens: an image challenge and nothing else. It loads nothing, so the policy
// allows only its inline style and its data: image; its form posts back here, and the answer's
// redirect goes on to the client's origin, which browsers check against form-action too. The 2022
// SDK shows the page in an iframe on the app's own page, so that origin (the redirect's, already
// one of the app's CORS origins) may frame it, and no other.
const pageSecurityPolicy = (redirectOrigin: string) =>
  `default-src 'none'; img-src data:; style-src 'unsafe-inline'; form-action 'self' ${redirectOrigin}; frame-ancestors ${redirectOrigin}`;

/**
 * The 2022 CloudBase SDK's captcha flow (COMPANION-APIS.md 2.5, legacy `POST /auth/v1/captcha/init`):
 * `init` answers the url of a page; the page shows an image challenge and posts the answer back;
 * verifyd then sends the browser to the client's `redirect_uri` with `?captcha_token=&expires_in=`
 * (or `?error=&error_description=`) and its `state`, the query the SDK reads. A pass earned so is
 * the same as one from `/captcha/data/verify`, accepted as `x-captcha-token` or `?captcha_token=`.
 *
 * The redirect carries a credential, and a redirect anywhere would make verifyd an open redirector:
 * `redirect_uri` must be on one of the app's CORS origins (any http(s) address in dev mode, for an
 * app that lists none).
 */
export function registerLegacyCaptchaFlow(fastify: FastifyInstance, options: LegacyCaptchaOptions): void {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  const { engine, devMode, appOf, deviceIdOf, prefix } = options;

  const redirectOf = (tenant: App, raw: string): URL => {
    let url: URL;
    try {
      url = new URL(raw);
    } catch {
      throw invalidField("redirect_uri", "redirect_uri must be an absolute URL");
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      throw invalidField("redirect_uri", "redirect_uri must be an http or https URL");
    }
    if (!isAppOrigin(tenant, url.origin, devMode)) {
      throw invalidField("redirect_uri", "redirect_uri must be on one of the app's CORS origins");
    }
    return url;
  };

  /** Sends the browser back to the client with `params` (and its `state`) added to its query. */
  const redirectBack = (reply: FastifyReply, to: URL, params: Record<string, string>, state?: string) => {
    for (const [name, value] of Object.entries(params)) to.searchParams.set(name, value);
    if (state !== undefined) to.searchParams.set("state", state);
    return reply.code(303).header("location", to.href).send();
  };

  /** A refusal once the redirect is known good goes back to the client, as the SDK expects it. */
  const redirectRefusal = (
    reply: FastifyReply,
    request: FastifyRequest,
    to: URL,
    error: unknown,
    state?: string,
  ) => {
    const refusal = toOtpError(error, request);
    if (!refusal) throw error;
    answeredError(request, "cloudbase", refusal);
    const { body } = cloudbaseErrorOf(refusal);
    return redirectBack(reply, to, { error: body.error, error_description: body.error_description }, state);
  };

  app.post(
    "/captcha/init",
    {
      schema: {
        body: CaptchaInitBody,
        querystring: ClientIdQuery,
        response: { 200: CaptchaInitReply, ...errorResponses },
      },
    },
    async (request) => {
      const { client_id: clientId, redirect_uri: redirectUri, state } = request.body;
      const tenant = await appOf(request, clientId);
      redirectOf(tenant, redirectUri);
      // The SDK asks before every send. A client the send would not ask for a captcha gets no
      // challenge: a token that stands for none, which grants nothing (a send that does need a
      // captcha answers it captcha_invalid, and the SDK asks again, now for the page).
      const wanted = await engine.captchaWanted({
        app: tenant,
        face: "cloudbase",
        clientIp: request.ip,
        deviceId: deviceIdOf(request),
      });
      if (!wanted) return { captcha_token: NO_CAPTCHA_NEEDED, expires_in: SDK_TOKEN_TTL_SECONDS };
      // An app whose captcha is a third-party widget has no page to offer: its client shows the
      // widget and sends its token; told so here rather than by a page that would only say it.
      engine.captcha.requireBuiltIn(tenant);
      const page = new URLSearchParams({ client_id: tenant.clientId, redirect_uri: redirectUri });
      if (state !== undefined) page.set("state", state);
      return {
        url: `${request.protocol}://${request.host}${prefix}/captcha/page?${page}`,
        // How long the pass the page gives lasts.
        expires_in: PASS_TTL_SECONDS,
      };
    },
  );

  app.get("/captcha/page", { schema: CAPTCHA_PAGE_SCHEMA }, async (request, reply) => {
    const { client_id: clientId, redirect_uri: redirectUri, state } = request.query;
    const tenant = await appOf(request, clientId);
    const back = redirectOf(tenant, redirectUri);
    refuseDrawnElsewhere(request, "page", (origin) => origin === back.origin);
    let challenge: Awaited<ReturnType<Engine["captcha"]["createChallenge"]>>;
    try {
      challenge = await engine.captcha.createChallenge(tenant, "image", request.ip);
    } catch (error) {
      return redirectRefusal(reply, request, back, error, state);
    }
    if (challenge.kind !== "image") throw new Error("an image challenge was asked for");
    return reply
      .header("content-security-policy", pageSecurityPolicy(back.origin))
      .header("cache-control", "no-store")
      .type("text/html; charset=utf-8")
      .send(
        challengePage({
          image: challenge.imageDataUri,
          fields: {
            token: challenge.token,
            client_id: tenant.clientId,
            redirect_uri: redirectUri,
            ...(state === undefined ? {} : { state }),
          },
        }),
      );
  });

  // The page's form is the one body this face takes as a form, and only on its own route: a form
  // is what any web page may post across origins without a preflight, so on the other routes it
  // would let any site make its visitors' browsers send codes.
  fastify.register(async (pageForm) => {
    // (in place of the face's, which reads a form as JSON beside the SDK's x-device-id)
    pageForm.removeContentTypeParser("application/x-www-form-urlencoded");
    pageForm.addContentTypeParser(
      "application/x-www-form-urlencoded",
      { parseAs: "string" },
      refusingEncodedBodies<string>((_request, body, done) => {
        // A repeated field keeps its first value; no prototype to pollute.
        const fields: Record<string, string> = Object.create(null);
        for (const [name, value] of new URLSearchParams(body)) fields[name] ??= value;
        done(null, fields);
      }),
    );
    pageForm
      .withTypeProvider<TypeBoxTypeProvider>()
      .post("/captcha/page", { schema: CAPTCHA_ANSWER_SCHEMA }, async (request, reply) => {
        const { client_id: clientId, redirect_uri: redirectUri, state, token, key } = request.body;
        const tenant = await appOf(request, clientId);
        const back = redirectOf(tenant, redirectUri);
        try {
          const pass = await engine.captcha.solve(tenant, token, key, {
            kind: "image",
            clientIp: request.ip,
          });
          return redirectBack(
            reply,
            back,
            { captcha_token: pass.passToken, expires_in: String(SDK_TOKEN_TTL_SECONDS) },
            state,
          );
        } catch (error) {
          return redirectRefusal(reply, request, back, error, state);
        }
      });
  });
}

// The `client_id` query the face reads on every route (before the body's), checked as it is there:
// unchecked, a repeated one was an array that reached the app store. (Only that parameter: these
// routes take no captcha_token.)
const ClientIdQuery = Type.Object({ client_id: ClientQuery.properties.client_id });

// What `/docs` says the page and its form answer. A refusal before the redirect is known good (a bad
// `redirect_uri`, an unknown client) is the face's JSON error; after it, a redirect back.
const REDIRECTED_BACK = {
  type: "null",
  description:
    "back to redirect_uri (Location) with captcha_token and expires_in, or error and error_description, and state",
} as const;
const CAPTCHA_PAGE_SCHEMA = {
  querystring: CaptchaPageQuery,
  response: {
    200: {
      description: "the challenge page",
      content: { "text/html": { schema: { type: "string" } } },
    },
    303: REDIRECTED_BACK,
    ...errorResponses,
  },
};
const CAPTCHA_ANSWER_SCHEMA = {
  body: CaptchaPageForm,
  querystring: ClientIdQuery,
  response: { 303: REDIRECTED_BACK, ...errorResponses },
};

/** Whether `origin` is one of the app's: one of its CORS origins (any, in dev mode, for an app that lists none). */
export function isAppOrigin(tenant: App, origin: string, devMode: boolean): boolean {
  return tenant.corsOrigins.length === 0 ? devMode : tenant.corsOrigins.includes(origin);
}

// How a browser makes the two requests that draw a challenge: it loads the page as a page, in a
// window or a frame (Sec-Fetch-Dest), and the current SDK fetches `captcha/data` with CORS
// (Sec-Fetch-Mode), which a page of another site cannot do unless the app grants it.
const DRAWN_AS = {
  page: {
    header: "sec-fetch-dest",
    allowed: new Set(["document", "iframe", "frame"]),
    as: "opened as a page",
  },
  fetch: { header: "sec-fetch-mode", allowed: new Set(["cors", "same-origin"]), as: "fetched with CORS" },
} as const;

/**
 * Refuses to draw a challenge for a request that is not the app's own page asking for one: the
 * page the 2022 SDK opens, or the current SDK's `captcha/data`. Each draw counts against the
 * visitor's address, so any site could otherwise spend its visitors' budget (the page in 30 `<img>`
 * tags, 31 no-cors posts to `captcha/data`) and leave them unable to get a captcha for 10 minutes.
 * A browser says, in headers no page can set, how it makes the request (`DRAWN_AS`) and where from:
 * the page's `Referer` (unless told not to send it; a site that frames the page with no referrer
 * is still let through, and `frame-ancestors` keeps it from showing), a fetch's `Origin` when
 * another site made it (`Sec-Fetch-Site`). `fromApp` says whether that origin is the app's. A
 * client that is no browser sends none of these, and is let through.
 */
export function refuseDrawnElsewhere(
  request: FastifyRequest,
  drawnAs: keyof typeof DRAWN_AS,
  fromApp: (origin: string) => boolean,
): void {
  const what = drawnAs === "page" ? "The captcha page is drawn" : "A captcha is drawn";
  const how = DRAWN_AS[drawnAs];
  const made = request.headers[how.header];
  if (typeof made === "string" && !how.allowed.has(made)) {
    throw new OtpError("VALIDATION_FAILED", { message: `${what} only when ${how.as}` });
  }
  // An Origin is compared as it is sent, as CORS compares it: parsed, one without a host
  // (`capacitor://localhost`, an app's web view) would read as "null". A Referer is a whole URL.
  const { referer, origin } = request.headers;
  const from =
    drawnAs === "page"
      ? referer === undefined
        ? undefined
        : (URL.parse(referer)?.origin ?? "")
      : request.headers["sec-fetch-site"] === "cross-site"
        ? (origin ?? "")
        : undefined;
  if (from !== undefined && !fromApp(from)) {
    throw new OtpError("VALIDATION_FAILED", { message: `${what} only when the app's own page asks for it` });
  }
}

/** The challenge page: the image, one text field, and the hidden fields the answer goes back with. */
function challengePage(page: { image: string; fields: Record<string, string> }): string {
  const hidden = Object.entries(page.fields)
    .map(([name, value]) => `<input type="hidden" name="${name}" value="${escapeHtml(value)}">`)
    .join("");
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Verification</title>
<style>body{font-family:sans-serif;display:flex;justify-content:center;margin-top:15vh}form{display:grid;gap:12px}</style>
</head><body>
<form method="post" action="page">
<img src="${escapeHtml(page.image)}" alt="Characters to type">
<label>Type the characters in the image / 请输入图中字符 <input name="key" required maxlength="64" autocomplete="off" autofocus></label>
${hidden}
<button type="submit">OK / 确定</button>
</form>
</body></html>
`;
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (character) => `&#${character.charCodeAt(0)};`);
}
