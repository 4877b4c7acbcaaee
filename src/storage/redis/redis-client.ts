import { Redis } from "ioredis";
import type { Logger } from "../../core/ports.js";

// A Lua call takes microseconds; a reply later than this means Redis (or the path to it) is gone.
// Failing the command then answers the caller 503 at once instead of letting requests pile up.
export const REDIS_COMMAND_TIMEOUT_MS = 1_000;
// Connecting is allowed a little longer than a command: a TLS handshake to a managed Redis.
export const REDIS_CONNECT_TIMEOUT_MS = 2_000;
// A connection that has had commands in flight this long without a byte back is dead (a peer that
// vanished without a reset, a proxy that keeps acknowledging): it is destroyed and a new one made.
// A command timing out alone leaves the socket "connected", and every later command would time
// out on it until the kernel gave up (about 15 minutes, never behind such a proxy). Longer than a
// command's timeout, so one slow reply fails its command but does not cost the connection.
export const REDIS_SOCKET_TIMEOUT_MS = 2_000;
// TCP keepalive on idle connections (the delivery thread's reads are rare), probing after 10 s
// instead of ioredis's 30: a NAT or firewall does not drop them quietly, and a peer gone while
// nothing was in flight is found eventually (the probes' pace is the system's). A command in
// flight is covered by the socket timeout above.
const REDIS_KEEPALIVE_MS = 10_000;
// Reconnect backoff: 50 ms, 100 ms, ... capped at 2 s, so a returning Redis is found within seconds.
const RECONNECT_STEP_MS = 50;
const RECONNECT_MAX_DELAY_MS = 2_000;

export interface RedisClientOptions {
  url: string;
  logger: Logger;
}

/**
 * A Redis client that fails fast instead of queueing: while Redis is unreachable every command
 * rejects at once (the caller answers 503, fail closed), a connection that went silent is replaced
 * within seconds, and the client reconnects with backoff in the background so service resumes by
 * itself. Resolves once the first connection is ready.
 */
export async function connectRedis(options: RedisClientOptions): Promise<Redis> {
  const redis = createRedisClient(options);
  try {
    await redis.connect();
    await requireSelectedDatabase(redis);
    await requireNoEviction(redis, options.logger);
  } catch (error) {
    redis.disconnect();
    throw error;
  }
  return redis;
}

/**
 * The client `connectRedis` connects, not connected yet: for a reader that may start before Redis
 * answers (the delivery thread), whose commands fail at once until it does.
 */
export function createRedisClient(options: RedisClientOptions): Redis {
  const redis = new Redis(options.url, {
    lazyConnect: true,
    // No offline queue: a command issued while disconnected fails now, it is not replayed later
    // when its caller has long given up.
    enableOfflineQueue: false,
    // Never resend a command whose connection died: a Lua script may already have run, and running
    // `issue` twice would count a send twice.
    autoResendUnfulfilledCommands: false,
    maxRetriesPerRequest: 0,
    // The commands of one event-loop turn (the sends of one burst) leave in one socket write and
    // Redis reads them in one go: a write system call per command was an eighth of a send's CPU.
    enableAutoPipelining: true,
    commandTimeout: REDIS_COMMAND_TIMEOUT_MS,
    socketTimeout: REDIS_SOCKET_TIMEOUT_MS,
    keepAlive: REDIS_KEEPALIVE_MS,
    connectTimeout: REDIS_CONNECT_TIMEOUT_MS,
    retryStrategy: (times) => Math.min(times * RECONNECT_STEP_MS, RECONNECT_MAX_DELAY_MS),
  });
  let down = false;
  // Without a listener an `error` event would crash the process; log each outage once.
  redis.on("error", (error: Error) => {
    if (down) return;
    down = true;
    options.logger.warn({ err: error.message }, "redis unreachable; reconnecting with backoff");
  });
  redis.on("ready", () => {
    if (!down) return;
    down = false;
    options.logger.info({}, "redis reachable again");
  });
  return redis;
}

/**
 * Refuses a database number the server does not have. ioredis selects the URL's database as it
 * connects, and when Redis refuses it (`/99` on a server of 16) only emits an error and goes on in
 * database 0: verifyd would share another application's keys while reporting itself ready.
 */
async function requireSelectedDatabase(redis: Redis): Promise<void> {
  const database = redis.options.db ?? 0;
  if (database === 0) return;
  try {
    await redis.select(database);
  } catch (error) {
    throw new Error(`Redis has no database ${database} (${(error as Error).message})`);
  }
}

/**
 * Refuses a Redis that evicts keys when its memory is full. Every key verifyd writes has a TTL, so
 * under `volatile-*` (managed services' usual default) as under `allkeys-*`, a flood of sends to
 * other addresses would evict a recipient's rate counters, codes and pass tokens: limits let
 * through, codes unknown. Redis without `maxmemory` never evicts, whatever the policy.
 */
export async function requireNoEviction(redis: Redis, logger: Logger): Promise<void> {
  let info: string;
  try {
    info = await redis.info("memory");
  } catch (error) {
    // INFO can be renamed away on managed services: nothing to tell then, but say so.
    logger.warn({ err: (error as Error).message }, "could not read Redis's eviction policy (INFO memory)");
    return;
  }
  const field = (name: string) => new RegExp(`^${name}:(.*)$`, "m").exec(info)?.[1]?.trim();
  const maxmemory = Number(field("maxmemory") ?? 0);
  const policy = field("maxmemory_policy") ?? "noeviction";
  if (maxmemory > 0 && policy !== "noeviction") {
    throw new Error(
      `Redis evicts keys when full (maxmemory-policy ${policy}, maxmemory ${maxmemory} bytes): it could evict rate counters and codes, letting limits through. Set maxmemory-policy noeviction (or maxmemory 0) for verifyd's Redis.`,
    );
  }
}
