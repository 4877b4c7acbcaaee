import { errorCodes, type FastifyBodyParser, type FastifyRequest } from "fastify";

/** What reads a body once `corsOnlyBodyParser` let it through. */
export type BodyReader = (
  request: FastifyRequest,
  body: string,
  done: (error: Error | null, body?: unknown) => void,
) => void;

/**
 * A body parser for a media type that any web page may post cross-site without a CORS preflight
 * (`text/plain`, `application/x-www-form-urlencoded`: an HTML form, a no-cors fetch), which would
 * make every visitor's browser call the face from the visitor's own address. `read` gets the body
 * only of a request that `preflighted` finds a header of the face's own on: no page can add one to
 * a cross-site request without a preflight, which the app's CORS origins answer. Never of one the
 * browser says it sent without CORS (`Sec-Fetch-Mode: no-cors` or `navigate`, which no page can
 * set). Any other such request is refused as an unsupported media type, which each face answers
 * as "Content-Type must be application/json" in its own shape, where its route reads a body; where
 * the route reads none, the body is passed on unread.
 */
export function corsOnlyBodyParser(
  preflighted: (request: FastifyRequest) => boolean,
  read: BodyReader,
): FastifyBodyParser<string> {
  return (request, body, done) => {
    if (!preflighted(request) || sentWithoutCors(request)) {
      if (request.routeOptions.schema?.body === undefined) done(null, body);
      else done(new errorCodes.FST_ERR_CTP_INVALID_MEDIA_TYPE(request.headers["content-type"]));
      return;
    }
    read(request, body, done);
  };
}

function sentWithoutCors(request: FastifyRequest): boolean {
  const mode = request.headers["sec-fetch-mode"];
  const value = (typeof mode === "string" ? mode : "").trim().toLowerCase();
  return value === "no-cors" || value === "navigate";
}
