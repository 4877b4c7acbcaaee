import type { Redis } from "ioredis";

/**
 * The Lua scripts of the Redis hot state. Each core operation is one script, so it is one round
 * trip and atomic (Redis runs a script to completion before any other command). ioredis sends a
 * script's body once per connection and its SHA (EVALSHA) afterwards.
 *
 * Time is the caller's `now` (ARGV), never Redis's clock, so the rules are a pure function of the
 * stored state and the time core passes in, exactly like the SQLite store; key TTLs only bound
 * memory. Counters are "count:resetAtMs"; codes are packed by redis-code-codec.ts.
 */

// Shared helpers, prepended to every script that needs them.
const COUNTERS = `
local function read_counter(key, now)
  local v = redis.call('GET', key)
  if not v then return 0, 0 end
  local c, r = string.match(v, '^(%d+):(%d+)$')
  r = tonumber(r)
  if r <= now then return 0, 0 end
  return tonumber(c), r
end
-- A window starts at its first hit; an elapsed one restarts at 1 (COUNTER_HIT_SQL's semantics).
local function hit_counter(key, window_ms, now)
  local c, r = read_counter(key, now)
  if r == 0 then c, r = 1, now + window_ms else c = c + 1 end
  redis.call('SET', key, string.format('%d:%d', c, r), 'PX', math.max(1, r - now))
  return c, r
end
local function refund_counter(key, now)
  local c, r = read_counter(key, now)
  if c > 0 then redis.call('SET', key, string.format('%d:%d', c - 1, r), 'KEEPTTL') end
end
`;

// The code header (redis-code-codec.ts): status, attempts, max attempts, expiry (base36), channel,
// byte length of the recipient, and the position where the recipient starts.
const CODE_HEADER = `
local HEADER = '^(%a)(%d+),(%d+),(%w+),(%a)(%d+):()'
`;

/**
 * issue. KEYS: code, slot, idempotency, counters... ARGV: now, packed code, code TTL ms, app tag,
 * id, fingerprint ('' = no idempotency), idempotency TTL ms, then per counter: limit, window ms,
 * increment (0|1), flags ('s' shadow, 'l' a limit that sets resend-after).
 * Returns {'replayed', id, code, resendAfterSeconds, fingerprint} | {'refused', {index, ms left}...}
 * | {'issued', resendAfterMs, {shadowed index...}}.
 */
const ISSUE = `${COUNTERS}
local now = tonumber(ARGV[1])
local tag = ARGV[4]
local fingerprint = ARGV[6]
if fingerprint ~= '' then
  local seen = redis.call('GET', KEYS[3])
  if seen then
    local expires, resend, id, first_fingerprint = string.match(seen, '^(%d+):(%d+):([^:]*):(.*)$')
    if tonumber(expires) > now then
      local first = redis.call('GET', tag .. 'c:' .. id)
      -- Like SQLite: a key whose code is gone no longer replays; the request is issued afresh.
      if first then return {'replayed', id, first, tonumber(resend), first_fingerprint} end
    end
  end
end
local counters = #KEYS - 3
-- Check every rule before counting any, so a refused request consumes no budget.
local refusals, shadowed = {}, {}
for i = 1, counters do
  local a = 8 + (i - 1) * 4
  local c, r = read_counter(KEYS[3 + i], now)
  if r ~= 0 and c + tonumber(ARGV[a + 2]) > tonumber(ARGV[a]) then
    if string.find(ARGV[a + 3], 's', 1, true) then
      shadowed[#shadowed + 1] = i
    else
      refusals[#refusals + 1] = {i, r - now}
    end
  end
end
if #refusals > 0 then return {'refused', refusals} end
local resend_ms = 0
for i = 1, counters do
  local a = 8 + (i - 1) * 4
  if ARGV[a + 2] ~= '0' then
    local c, r = hit_counter(KEYS[3 + i], tonumber(ARGV[a + 1]), now)
    if string.find(ARGV[a + 3], 'l', 1, true) and c >= tonumber(ARGV[a]) and r - now > resend_ms then
      resend_ms = r - now
    end
  end
end
-- At most one pending code per slot: the pointer names it, and it becomes superseded.
local previous = redis.call('GET', KEYS[2])
if previous then
  local previous_key = tag .. 'c:' .. previous
  local v = redis.call('GET', previous_key)
  if v and string.sub(v, 1, 1) == 'p' then
    redis.call('SET', previous_key, 's' .. string.sub(v, 2), 'KEEPTTL')
  end
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('SET', KEYS[2], ARGV[5], 'PX', ARGV[3])
if fingerprint ~= '' then
  local ttl = tonumber(ARGV[7])
  redis.call('SET', KEYS[3],
    string.format('%d:%d:', now + ttl, math.ceil(resend_ms / 1000)) .. ARGV[5] .. ':' .. fingerprint, 'PX', ttl)
end
return {'issued', resend_ms, shadowed}
`;

/**
 * withdraw: undoes an `issue` whose outbox commit failed. KEYS: code, slot, idempotency, counters...
 * ARGV: now, id, then per counter its increment (0|1). The superseded code is not restored (the
 * caller gets a 503 and sends again).
 */
const WITHDRAW = `${COUNTERS}
local now = tonumber(ARGV[1])
local id = ARGV[2]
redis.call('DEL', KEYS[1])
if redis.call('GET', KEYS[2]) == id then redis.call('DEL', KEYS[2]) end
local seen = redis.call('GET', KEYS[3])
if seen and string.match(seen, '^%d+:%d+:([^:]*):') == id then redis.call('DEL', KEYS[3]) end
for i = 1, #KEYS - 3 do
  if ARGV[2 + i] == '1' then refund_counter(KEYS[3 + i], now) end
end
return 1
`;

/**
 * consumeAttempt. KEYS: the code key, or the slot key when ARGV[2] is '1'. ARGV: now, by slot,
 * app tag, failure budget limit, failure budget window ms.
 * Returns {'not_found'} | {'refused', reason, code, id, ms left?} | {'counted', code, id}.
 */
const CONSUME_ATTEMPT = `${COUNTERS}${CODE_HEADER}
local now = tonumber(ARGV[1])
local by_slot = ARGV[2] == '1'
local tag = ARGV[3]
local key, id = KEYS[1], ''
if by_slot then
  id = redis.call('GET', KEYS[1])
  if not id then return {'not_found'} end
  key = tag .. 'c:' .. id
end
local v = redis.call('GET', key)
if not v then return {'not_found'} end
local status, attempts, max_attempts, expires, channel, to_bytes, to_start = string.match(v, HEADER)
if status ~= 'p' then
  -- By recipient only the pending code counts, as in SQLite (its query selects status 'pending').
  if by_slot then return {'not_found'} end
  return {'refused', status, v, id}
end
if now >= tonumber(expires, 36) then return {'refused', 'expired', v, id} end
local attempts_digits = #attempts
attempts = tonumber(attempts)
if attempts >= tonumber(max_attempts) then return {'refused', 'max_attempts', v, id} end
-- failedChecksKey(channel, to) of core/verification/keys.ts: "f:<channel>:<address>".
local to = string.sub(v, to_start, to_start + tonumber(to_bytes) - 1)
local failure_key = tag .. 'n:f:' .. (channel == 'e' and 'email' or 'sms') .. ':' .. to
local failures, reset_at = read_counter(failure_key, now)
if reset_at ~= 0 and failures >= tonumber(ARGV[4]) then
  return {'refused', 'failure_budget', v, id, reset_at - now}
end
-- Count the attempt before the caller compares: concurrent guesses can never pass the cap.
local counted = status .. (attempts + 1) .. string.sub(v, 2 + attempts_digits)
redis.call('SET', key, counted, 'KEEPTTL')
hit_counter(failure_key, tonumber(ARGV[5]), now)
return {'counted', counted, id}
`;

/** approve. KEYS: code, token, failure counter. ARGV: now, token value, token TTL ms. Returns 1 once. */
const APPROVE = `${COUNTERS}
local v = redis.call('GET', KEYS[1])
if not v or string.sub(v, 1, 1) ~= 'p' then return 0 end
redis.call('SET', KEYS[1], 'a' .. string.sub(v, 2), 'KEEPTTL')
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
refund_counter(KEYS[3], tonumber(ARGV[1]))
return 1
`;

/** cancel. KEYS: code. Returns the code as it stands afterwards, or nil. */
const CANCEL = `
local v = redis.call('GET', KEYS[1])
if not v then return false end
if string.sub(v, 1, 1) == 'p' then
  v = 'c' .. string.sub(v, 2)
  redis.call('SET', KEYS[1], v, 'KEEPTTL')
end
return v
`;

/** refund. KEYS: counter. ARGV: now. */
const REFUND = `${COUNTERS}
refund_counter(KEYS[1], tonumber(ARGV[1]))
return 1
`;

/** hit. KEYS: counter. ARGV: now, window ms. Returns {count, resetAtMs}. */
const HIT = `${COUNTERS}
local c, r = hit_counter(KEYS[1], tonumber(ARGV[2]), tonumber(ARGV[1]))
return {c, r}
`;

/**
 * takeTry (captcha). KEYS: challenge. ARGV: now, app id. The try is taken in the same step that
 * reads the challenge, so concurrent answers cannot get more tries than it has.
 * Returns the challenge hash fields after the decrement, or nil.
 */
const TAKE_TRY = `
local app, expires, tries = unpack(redis.call('HMGET', KEYS[1], 'a', 'x', 't'))
if not app or app ~= ARGV[2] or tonumber(expires) <= tonumber(ARGV[1]) or tonumber(tries) <= 0 then
  return false
end
redis.call('HINCRBY', KEYS[1], 't', -1)
return redis.call('HGETALL', KEYS[1])
`;

/** consumeChallenge (captcha). KEYS: challenge. ARGV: app id. Returns 1 for exactly one caller. */
const CONSUME_CHALLENGE = `
if redis.call('HGET', KEYS[1], 'a') ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1])
`;

type Arg = string | Buffer | number;
type ScriptCall = (numberOfKeys: number, ...args: Arg[]) => Promise<unknown>;

/** The scripts as commands on the client; `*Buffer` variants return binary-safe replies. */
export interface VerifydScripts {
  vdIssueBuffer: ScriptCall;
  vdWithdraw: ScriptCall;
  vdConsumeAttemptBuffer: ScriptCall;
  vdApprove: ScriptCall;
  vdCancelBuffer: ScriptCall;
  vdRefund: ScriptCall;
  vdHit: ScriptCall;
  vdTakeTry: ScriptCall;
  vdConsumeChallenge: ScriptCall;
}

const SCRIPTS: Record<string, string> = {
  vdIssue: ISSUE,
  vdWithdraw: WITHDRAW,
  vdConsumeAttempt: CONSUME_ATTEMPT,
  vdApprove: APPROVE,
  vdCancel: CANCEL,
  vdRefund: REFUND,
  vdHit: HIT,
  vdTakeTry: TAKE_TRY,
  vdConsumeChallenge: CONSUME_CHALLENGE,
};

/** Defines every script once on this client (idempotent) and returns it typed with them. */
export function withScripts(redis: Redis): Redis & VerifydScripts {
  for (const [name, lua] of Object.entries(SCRIPTS)) {
    if (!(name in redis)) redis.defineCommand(name, { lua });
  }
  return redis as Redis & VerifydScripts;
}
