import type { FastifyInstance } from "fastify";
import { invalidField } from "../../core/errors.js";

/**
 * Refuses a request that carries a NUL character in any string of its body, query or path
 * parameters (names included), as VALIDATION_FAILED naming the field, so each face answers in its
 * own shape. No field of these APIs can hold one, and PostgreSQL can neither store nor compare one:
 * in cluster mode such a value reached the database and came back as a 503 (a backend error),
 * and in a batch of send-log rows it would have cost the whole batch.
 *
 * Registered by each face next to its error handler, so the refusal is rendered by that handler.
 */
export function refuseNulCharacters(fastify: FastifyInstance): void {
  fastify.addHook("preValidation", (request, _reply, done) => {
    const field = nulField(request.body) ?? nulField(request.query) ?? nulField(request.params);
    done(field === undefined ? undefined : invalidField(field, `${field} must not contain a NUL character`));
  });
}

/**
 * The path of the first string holding a NUL, or undefined. Walked with a stack of its own, not
 * recursively: a 16 KiB body can nest thousands of levels deep.
 */
export function nulField(value: unknown): string | undefined {
  if (typeof value === "string") return value.includes("\0") ? "body" : undefined;
  if (typeof value !== "object" || value === null) return undefined;
  const pending: [object, string][] = [[value, ""]];
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    const [node, path] = next;
    for (const key in node) {
      const item = (node as Record<string, unknown>)[key];
      const nested = typeof item === "object" && item !== null;
      const holdsNul = key.includes("\0") || (typeof item === "string" && item.includes("\0"));
      if (!holdsNul && !nested) continue;
      // a path is built only for a hit, or for an object to look into
      const at = path === "" ? key : `${path}.${key}`;
      if (holdsNul) return at;
      pending.push([item as object, at]);
    }
  }
  return undefined;
}
