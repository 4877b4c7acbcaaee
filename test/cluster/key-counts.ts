import type { Redis } from "ioredis";

// One script, so a count is one round trip and sees one moment of the keyspace. The KEYS pattern
// only narrows what the script looks at (a `*` between the braces could span them); %b{} reads
// the app's tag exactly.
const COUNT_KEYS = `
local counts = {}
local function add(name) counts[name] = (counts[name] or 0) + 1 end
for _, key in ipairs(redis.call('KEYS', ARGV[1])) do
  local kind = string.match(string.sub(key, tonumber(ARGV[2]) + 1), '^%b{}:(%a):')
  if kind and string.find(ARGV[3], kind, 1, true) then
    add(kind)
    if kind == 's' or kind == 'c' then add('code:' .. redis.call('GETRANGE', key, 0, 0)) end
  end
end
local flat = {}
for name, n in pairs(counts) do
  flat[#flat + 1] = name
  flat[#flat + 1] = n
end
return flat
`;

/**
 * How many keys of each of `kinds` a cluster server holds under `prefix`. Kinds are the letters
 * after an app's hash tag in src/storage/redis/redis-keys.ts: `s` and `c` codes (under the slot's
 * key, or displaced, under their own), `n` counters, `t` tokens, `i` idempotency, `p` captcha
 * passes. Codes are also counted by status, as `code:<status letter>` (the first byte of a packed
 * code, redis-code-codec.ts: `a` approved). A kind without keys is absent from the result.
 *
 * Redis has no index by prefix, so this reads every key name of the database: cheap only in a
 * database that holds little besides the prefix's keys.
 */
export async function redisKeyCounts(
  redis: Redis,
  prefix: string,
  kinds: string[],
): Promise<Record<string, number>> {
  if (!kinds.every((kind) => /^[a-z]$/.test(kind))) throw new Error(`not key kinds: ${kinds.join(", ")}`);
  const pattern = `${prefix.replace(/[*?[\]\\]/g, "\\$&")}{*}:[${kinds.join("")}]:*`;
  const flat = (await redis.eval(COUNT_KEYS, 0, pattern, Buffer.byteLength(prefix), kinds.join(""))) as (
    | string
    | number
  )[];
  const counts: Record<string, number> = {};
  for (let index = 0; index + 1 < flat.length; index += 2)
    counts[String(flat[index])] = Number(flat[index + 1]);
  return counts;
}
