import type { FastifyInstance } from "fastify";
import { invalidField } from "../../core/errors.js";

/**
 * Refuses a request that carries malformed text in any string of its body, query or path
 * parameters (names included): a NUL character, or half of a surrogate pair (JSON can escape
 * one, `"\ud800"`, though it is no character at all). It is answered as VALIDATION_FAILED naming
 * the field, so each face answers in its own shape. No field of these APIs can hold such text, and
 * PostgreSQL cannot store it: in cluster mode a NUL anywhere, or a lone surrogate in a profile
 * (JSON) field, came back as a backend error (503) after the user's code was spent, where the
 * embedded store kept it.
 *
 * Registered by each face next to its error handler, so the refusal is rendered by that handler.
 */
export function refuseMalformedText(fastify: FastifyInstance): void {
  fastify.addHook("preValidation", (request, _reply, done) => {
    // A path no route serves is answered as the unknown route it is; its one parameter (`*`, the
    // whole path) is no field of any API.
    if (request.is404) return done();
    const field =
      malformedTextField(request.body) ??
      malformedTextField(request.query) ??
      malformedTextField(request.params);
    done(
      field === undefined
        ? undefined
        : invalidField(field, `${field} must be text without NUL characters or unpaired surrogates`),
    );
  });
}

const isMalformed = (text: string) => text.includes("\0") || !text.isWellFormed();

/**
 * The path of the first string (or name) that is malformed text, or undefined. Walked with a
 * stack of its own, not recursively: a 16 KiB body can nest thousands of levels deep.
 */
export function malformedTextField(value: unknown): string | undefined {
  if (typeof value === "string") return isMalformed(value) ? "body" : undefined;
  if (typeof value !== "object" || value === null) return undefined;
  const pending: [object, string][] = [[value, ""]];
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    const [node, path] = next;
    for (const key in node) {
      const item = (node as Record<string, unknown>)[key];
      const nested = typeof item === "object" && item !== null;
      const malformed = isMalformed(key) || (typeof item === "string" && isMalformed(item));
      if (!malformed && !nested) continue;
      // a path is built only for a hit, or for an object to look into
      const at = path === "" ? key : `${path}.${key}`;
      if (malformed) return at;
      pending.push([item as object, at]);
    }
  }
  return undefined;
}
