import type { FastifyInstance } from "fastify";

type WriteReply = (error: null, payload: unknown) => void;

/**
 * Holds each reply until the end of the event-loop turn that made it, then writes the turn's
 * replies one after another.
 *
 * Why: writing a reply wakes the client waiting for it. Where the client shares the machine (a load
 * generator, a reverse proxy on loopback), that wake-up is paid by the writer, inside its `writev`,
 * and on this project's VMs it cost more than deciding a refusal does: 29 µs of a 429's ~100 µs of
 * server CPU. Written as they are made, N replies read in one turn wake the client N times; held
 * to the turn's check phase (`setImmediate`, right after the poll phase that read the requests),
 * the first write wakes it and the others find it awake. Under a flood of refusals the server's
 * CPU per 429 fell from ~100 to ~58 µs (bench/RESULTS.md). A reply waits at most for the rest of
 * its turn; one request alone in a turn waits for nothing else.
 *
 * Replies made in a `setImmediate` callback (the answers of SQLite's group commit) would wait for
 * the next turn's poll phase too, and the client's next requests with them. The store says when
 * those answers' handlers have all run, and calls the function returned here: it writes what is
 * held at once (checks' server CPU a request fell ~7%, bench/RESULTS.md).
 *
 * Registered on the root instance before any route, so every reply of every face goes this way.
 */
export function writeRepliesTogether(fastify: FastifyInstance): () => void {
  let held: Array<[WriteReply, unknown]> | null = null;
  const writeHeld = () => {
    const replies = held ?? [];
    held = null;
    for (const [write, payload] of replies) {
      try {
        write(null, payload);
      } catch (error) {
        // A reply that cannot be written (its handler sent twice) must not keep the rest unwritten.
        fastify.log.error({ err: error }, "a held reply could not be written");
      }
    }
  };
  fastify.addHook("onSend", (_request, _reply, payload, done) => {
    if (held === null) {
      held = [];
      setImmediate(writeHeld);
    }
    held.push([done, payload]);
  });
  return writeHeld;
}
