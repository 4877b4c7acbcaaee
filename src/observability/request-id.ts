import { randomBytes } from "node:crypto";

/**
 * Request ids for one process: a random prefix drawn once, then a counter. Fastify's own is a bare
 * per-process counter (`req-1` in every process, again after every restart), which makes a quoted
 * id name no one request across a cluster's processes or a day's logs. The prefix costs one random
 * draw per process; each id only an increment and a string join.
 */
export function createRequestIds(): () => string {
  // 40 bits: two processes of a deployment share a prefix about once in a trillion pairs.
  const prefix = randomBytes(5).toString("hex");
  let counter = 0;
  return () => {
    counter += 1;
    return `${prefix}-${counter.toString(36)}`;
  };
}
