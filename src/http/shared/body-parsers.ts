import type { FastifyBodyParser, FastifyError, FastifyInstance } from "fastify";
import { invalidField, OtpError } from "../../core/errors.js";

/**
 * A body parser that first refuses a body sent with a Content-Encoding (gzip, br, ...): none is
 * decoded here, and Fastify would hand the parser the compressed bytes ("not valid JSON"), or a
 * plain body whose header lies as if it were plain. Checked in the parser, not in a hook, so a
 * request without a body pays nothing.
 */
export function refusingEncodedBodies<Body extends string | Buffer>(
  parse: FastifyBodyParser<Body>,
): FastifyBodyParser<Body> {
  return (request, body, done) => {
    const encoding = request.headers["content-encoding"];
    if (encoding !== undefined && COMPRESSION.test(encoding)) {
      done(encodedBodyRefusal(encoding), undefined);
      return;
    }
    return parse(request, body, done);
  };
}

/**
 * A Content-Encoding naming a compression (or encryption: aes128gcm) registered with IANA, alone or
 * in a list (`gzip, br`). Any other value is
 * ignored, as it was before compressed bodies were refused: Java clients often send
 * `Content-Encoding: UTF-8` (Apache HttpClient's `setContentEncoding("UTF-8")`) beside a plain body.
 */
const COMPRESSION =
  /(?:^|,)\s*(?:x-)?(?:gzip|deflate|br|zstd|compress|pack200-gzip|aes128gcm|dcb|dcz|exi)\s*(?:,|$)/i;

/**
 * Fastify's JSON parser (`getDefaultJsonParser`, which refuses `__proto__` and
 * `constructor.prototype` keys) with that refusal worded as such: Fastify words it as it words a
 * body that is no JSON at all. Only a refused body is parsed again, to tell the two apart.
 */
export function wordingJsonRefusals(parse: FastifyBodyParser<string>): FastifyBodyParser<string> {
  return (request, body, done) =>
    parse(request, body, (error, parsed) => {
      if ((error as FastifyError | null)?.code === "FST_ERR_CTP_INVALID_JSON_BODY" && isJson(body)) {
        done(
          invalidField("body", "The body must not hold a __proto__ or constructor.prototype key"),
          undefined,
        );
        return;
      }
      done(error, parsed);
    });
}

/** Fastify's JSON parser for `fastify`, with both refusals above. */
export function strictJsonParser(fastify: FastifyInstance): FastifyBodyParser<string> {
  return refusingEncodedBodies(wordingJsonRefusals(fastify.getDefaultJsonParser("error", "error")));
}

/**
 * Whether `error` refused how a request's body was framed (its encoding, length, media type, JSON),
 * before any face read what it says: on a path no route serves, the request is answered as the
 * unknown route it is rather than as a bad body.
 */
export function isBodyFramingRefusal(error: unknown): boolean {
  if (error instanceof OtpError) {
    const { field } = error.details;
    return error.code === "VALIDATION_FAILED" && (field === "body" || field === "content-encoding");
  }
  const code = (error as FastifyError | null)?.code;
  return (
    typeof code === "string" &&
    (code.startsWith("FST_ERR_CTP_") || code === "FST_ERR_ROUTE_MISSING_CONTENT_TYPE")
  );
}

function encodedBodyRefusal(encoding: string): OtpError {
  // (the header's value as sent would put any text into the answer; a known coding is named)
  const named = /^(x-)?(gzip|deflate|br|zstd|compress)$/i.test(encoding.trim())
    ? ` ${encoding.trim().toLowerCase()}`
    : "";
  return invalidField(
    "content-encoding",
    `Content-Encoding${named} is not supported: send the body uncompressed, without Content-Encoding`,
  );
}

function isJson(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}
