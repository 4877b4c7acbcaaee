import type { Redis } from "ioredis";
import {
  ID_TIME_CHARS,
  SLOT_TAG_CHARS,
  VERIFICATION_ID_PREFIX,
  VERIFICATION_RANDOM_BYTES,
  VERIFICATION_RANDOM_CHARS,
  VERIFICATION_STAMP_BYTES,
} from "../../core/ids.js";

/**
 * The Lua scripts of the Redis hot state. Each core operation is one script, so it is one round
 * trip and atomic (Redis runs a script to completion before any other command). ioredis sends a
 * script's body once per connection and its SHA (EVALSHA) afterwards.
 *
 * Time is the caller's `now` (ARGV), never Redis's clock, so the rules are a pure function of the
 * stored state and the time core passes in, exactly like the SQLite store; key TTLs only bound
 * memory. Counters are "count:resetAtMs"; codes are packed by redis-code-codec.ts.
 */

/**
 * How long an issue that superseded a pending code keeps naming it (d:<new id>), for a withdraw
 * that must find it without the issue's reply: longer than an outbox commit can take plus the
 * cluster store's withdraw retries (cluster-verification-store.ts), short enough to cost little.
 */
export const SUPERSEDED_HINT_TTL_MS = 60_000;

// Shared helpers, prepended to every script that needs them.
const COUNTERS = `
-- A counter's stored value (false when absent) as count and reset time; 0, 0 once elapsed.
local function parse_counter(v, now)
  if not v then return 0, 0 end
  local c, r = string.match(v, '^(%d+):(%d+)$')
  r = tonumber(r)
  if r <= now then return 0, 0 end
  return tonumber(c), r
end
local function read_counter(key, now)
  return parse_counter(redis.call('GET', key), now)
end
-- A window starts at its first hit; an elapsed one restarts at 1 (prepareCounterHit's, sqlite-counter-store.ts).
-- c, r: the counter as just read.
local function count_hit(key, c, r, window_ms, now)
  if r == 0 then c, r = 1, now + window_ms else c = c + 1 end
  redis.call('SET', key, string.format('%d:%d', c, r), 'PX', math.max(1, r - now))
  return c, r
end
local function hit_counter(key, window_ms, now)
  local c, r = read_counter(key, now)
  return count_hit(key, c, r, window_ms, now)
end
-- A hit given back. The last one takes its window with it: the window began at a hit that, undone,
-- never happened (as SQLite's rolled-back send), so the next hit starts a window of its own rather
-- than joining one whose end the undone hit set.
local function refund_counter(key, now)
  local c, r = read_counter(key, now)
  if c > 1 then
    redis.call('SET', key, string.format('%d:%d', c - 1, r), 'KEEPTTL')
  elseif c == 1 then
    redis.call('DEL', key)
  end
end
`;

// The code header (redis-code-codec.ts): status, attempts, max attempts, expiry (base36), channel,
// byte length of the recipient, and the position where the recipient starts.
const CODE_HEADER = `
local HEADER = '^(%a)(%d+),(%d+),(%w+),(%a)(%d+):()'
`;

// Where codes live (redis-keys.ts): the slot's newest under s:<slot tag>, a displaced one under
// c:<id>. A packed code ends with its id's stamp (redis-code-codec.ts): the id's time characters
// and raw random bytes, which tell the slot's code from another id of the same slot. Ids are
// `vf_<time><tag><random, base64url>` (core/ids.ts).
const CODES = `
local STAMP_BYTES = ${VERIFICATION_STAMP_BYTES}
local RANDOM_BYTES = ${VERIFICATION_RANDOM_BYTES}
local RANDOM_CHARS = ${VERIFICATION_RANDOM_CHARS}
local ID_CHARS = ${VERIFICATION_ID_PREFIX.length + ID_TIME_CHARS + SLOT_TAG_CHARS + VERIFICATION_RANDOM_CHARS}
local PREFIX = '${VERIFICATION_ID_PREFIX}'
local TIME_FROM = ${VERIFICATION_ID_PREFIX.length + 1}
local TIME_TO = ${VERIFICATION_ID_PREFIX.length + ID_TIME_CHARS}
local TAG_FROM = ${VERIFICATION_ID_PREFIX.length + ID_TIME_CHARS + 1}
local TAG_TO = ${VERIFICATION_ID_PREFIX.length + ID_TIME_CHARS + SLOT_TAG_CHARS}
local B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
-- base64url of a string whose length is a multiple of 3 (an id's random bytes)
local function base64url(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = string.byte(s, i, i + 2)
    local n = a * 65536 + b * 256 + c
    for shift = 18, 0, -6 do
      local d = math.floor(n / 2 ^ shift) % 64
      out[#out + 1] = string.sub(B64, d + 1, d + 1)
    end
  end
  return table.concat(out)
end
-- A code by id from its two possible keys: the slot's, if the code there is this one; else its own.
local function code_at(slot_key, own_key, stamp)
  local v = redis.call('GET', slot_key)
  if v and string.sub(v, -STAMP_BYTES) == stamp then return slot_key, v end
  return own_key, redis.call('GET', own_key)
end
-- The same from an id alone (an idempotency entry names only the id); nil for an id of another shape.
-- Whether the packed code v is the one id names (its stamp: the id's time and random parts).
local function is_code_of(v, id)
  return string.sub(v, -STAMP_BYTES, -RANDOM_BYTES - 1) == string.sub(id, TIME_FROM, TIME_TO)
    and base64url(string.sub(v, -RANDOM_BYTES)) == string.sub(id, -RANDOM_CHARS)
end
local function code_by_id(app, id)
  if #id ~= ID_CHARS then return nil end
  local slot_key = app .. 's:' .. string.sub(id, TAG_FROM, TAG_TO)
  local v = redis.call('GET', slot_key)
  if v and is_code_of(v, id) then return v end
  return redis.call('GET', app .. 'c:' .. id)
end
`;

// What an idempotency entry replays (see ISSUE for its format).
const REPLAYS = `
-- The key of the code as its keyed send issued it, kept as long as the entry (f:<key> beside
-- i:<key>): a code's own key lives an hour past its expiry, the answer a day.
local function first_answer_key(idempotency)
  local at = string.find(idempotency, '}:i:', 1, true)
  return string.sub(idempotency, 1, at) .. ':f:' .. string.sub(idempotency, at + 4)
end
-- {'replayed', id, code, resendAfterSeconds, fingerprint} | {'in_progress', fingerprint} | nil when
-- there is nothing to replay: the code as it is now, or as it was issued once its own key is gone
-- (as SQLite, which keeps codes a day).
local function replay_of(idempotency, app, now)
  local seen = redis.call('GET', idempotency)
  if not seen then return nil end
  -- (':p' and ':d' after the fingerprint: what a few builds before the 0 expiry wrote)
  local expires, resend, first_id, first_fingerprint, state =
    string.match(seen, '^(%d+):(%d+):([^:]*):(%x*):?([pd]?)$')
  if expires == '0' or state == 'p' then return {'in_progress', first_fingerprint} end
  if not expires or tonumber(expires) <= now then return nil end
  local first = code_by_id(app, first_id)
  if not first then
    -- (only if it is this entry's: a build before f: keys may have reused the key since)
    local kept = redis.call('GET', first_answer_key(idempotency))
    if kept and #first_id == ID_CHARS and is_code_of(kept, first_id) then first = kept end
  end
  if not first then return nil end
  return {'replayed', first_id, first, tonumber(resend), first_fingerprint}
end
`;

/**
 * replay. KEYS: idempotency. ARGV: now, app tag. Returns what `replay_of` does, {'none'} for nil.
 */
const REPLAY = `${CODES}${REPLAYS}
return replay_of(KEYS[1], ARGV[2], tonumber(ARGV[1])) or {'none'}
`;

/**
 * issue. KEYS: the slot's key under each of its tags (newest secret first), idempotency, counters...
 * ARGV: now, packed code, code TTL ms, app tag, id, fingerprint ('' = no idempotency), idempotency
 * TTL ms, number of slot keys, the idempotency entry's pending TTL ms ('0': durable at once),
 * replay only ('1'|'0'), then per counter: limit, window ms, increment (0|1), flags ('s' shadow,
 * 'l' a limit that sets resend-after).
 * Returns {'replayed', id, code, resendAfterSeconds, fingerprint} | {'in_progress', fingerprint} |
 * {'not_replayed'} | {'refused', {index, ms left}...} | {'issued', resendAfterMs, {shadowed index...}}.
 *
 * An idempotency entry is "expires:resend:id:fingerprint". Its `expires` is 0 while it is pending,
 * until the send's outbox row is committed elsewhere (PostgreSQL) and 'confirm' sets it: only a
 * committed send is replayed, as a 2xx must mean the message is queued. A pending entry lives only
 * as long as a commit can take (longer while a commit of unknown outcome is settled: CONFIRM's
 * hold), so one whose send died (a crash, a lost withdraw) lapses. (A build before pending entries
 * reads one as expired, and a committed one as it always did.)
 */
const ISSUE = `${COUNTERS}${CODES}${REPLAYS}
local SUPERSEDED_HINT_TTL_MS = ${SUPERSEDED_HINT_TTL_MS}
local now = tonumber(ARGV[1])
local app = ARGV[4]
local id = ARGV[5]
local fingerprint = ARGV[6]
local slots = tonumber(ARGV[8])
local idempotency = KEYS[slots + 1]
if fingerprint ~= '' then
  local replayed = replay_of(idempotency, app, now)
  if replayed then return replayed end
  if ARGV[10] == '1' then return {'not_replayed'} end
end
local counters = #KEYS - slots - 1
-- Every counter in one command (they share the app's hash tag), read once for the check and the hit.
local counter_keys = {}
for i = 1, counters do counter_keys[i] = KEYS[slots + 1 + i] end
local values = counters > 0 and redis.call('MGET', unpack(counter_keys)) or {}
local counts, resets = {}, {}
-- Check every rule before counting any, so a refused request consumes no budget.
local refusals, shadowed = {}, {}
for i = 1, counters do
  local a = 11 + (i - 1) * 4
  local c, r = parse_counter(values[i], now)
  counts[i], resets[i] = c, r
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
  local a = 11 + (i - 1) * 4
  if ARGV[a + 2] ~= '0' then
    local c, r = count_hit(counter_keys[i], counts[i], resets[i], tonumber(ARGV[a + 1]), now)
    if string.find(ARGV[a + 3], 'l', 1, true) and c >= tonumber(ARGV[a]) and r - now > resend_ms then
      resend_ms = r - now
    end
  end
end
-- At most one pending code per slot. The slot's key passes to the new code; the code it held moves
-- to its own key with what its TTL had left, superseded if it was pending, so its id still answers.
-- Its id has the new one's tag (the same key); its time and random part are in its stamp.
-- A pending code superseded here is named under d:<new id> for a while, so a withdraw can hand the
-- slot back to it even when this script's reply never arrived.
local held = redis.call('GET', KEYS[1])
if held then
  local ttl = redis.call('PTTL', KEYS[1])
  local was_pending = string.sub(held, 1, 1) == 'p'
  if was_pending then held = 's' .. string.sub(held, 2) end
  if ttl > 0 then
    local held_id = PREFIX .. string.sub(held, -STAMP_BYTES, -RANDOM_BYTES - 1) .. string.sub(id, TAG_FROM, TAG_TO)
      .. base64url(string.sub(held, -RANDOM_BYTES))
    redis.call('SET', app .. 'c:' .. held_id, held, 'PX', ttl)
    if was_pending then redis.call('SET', app .. 'd:' .. id, held_id, 'PX', SUPERSEDED_HINT_TTL_MS) end
  end
end
-- Under an older secret's tag (issued before a rotation) a pending code is superseded in place.
for i = 2, slots do
  local v = redis.call('GET', KEYS[i])
  if v and string.sub(v, 1, 1) == 'p' then redis.call('SET', KEYS[i], 's' .. string.sub(v, 2), 'KEEPTTL') end
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
if fingerprint ~= '' then
  local ttl = tonumber(ARGV[7])
  local pending_ttl = tonumber(ARGV[9])
  redis.call('SET', idempotency,
    string.format('%d:%d:', pending_ttl > 0 and 0 or now + ttl, math.ceil(resend_ms / 1000)) .. id .. ':' .. fingerprint,
    'PX', pending_ttl > 0 and pending_ttl or ttl)
  redis.call('SET', first_answer_key(idempotency), ARGV[2], 'PX', ttl)
end
return {'issued', resend_ms, shadowed}
`;

/**
 * confirm: the send's outbox row is committed, so its idempotency entry may now replay it; or,
 * with a pending TTL, hold: the row's commit is being settled, so the entry keeps answering "in
 * progress" at least that long. KEYS: idempotency. ARGV: now (the issue's), id, idempotency TTL
 * ms, resend-after seconds, fingerprint, pending TTL ms ('0': confirm). Returns 1 when the entry
 * is this send's afterwards, 0 when it names another send (left as it is).
 *
 * An entry that lapsed meanwhile (a commit slower than its pending TTL, a confirm retried after
 * Redis came back) is written again from the send's own fields: the row is queued (or being
 * settled), so the key must not be free for a second send. Confirmed, it replays for the rest of
 * the day from the issue on. A confirmed entry is never made pending again.
 */
const CONFIRM = `
local seen = redis.call('GET', KEYS[1])
local expires, rest
if seen then
  local id
  expires, rest, id = string.match(seen, '^(%d+):(%d+:([^:]*):.*)$')
  if id ~= ARGV[2] then return 0 end
  if expires ~= '0' then return 1 end
else
  rest = ARGV[4] .. ':' .. ARGV[2] .. ':' .. ARGV[5]
end
local pending_ttl = tonumber(ARGV[6])
if pending_ttl > 0 then
  if not seen or redis.call('PTTL', KEYS[1]) < pending_ttl then
    redis.call('SET', KEYS[1], '0:' .. rest, 'PX', pending_ttl)
  end
  return 1
end
local ttl = tonumber(ARGV[3])
redis.call('SET', KEYS[1], string.format('%d:', tonumber(ARGV[1]) + ttl) .. rest, 'PX', ttl)
return 1
`;

/**
 * withdraw: undoes an `issue` that may have run although its send failed: its outbox commit
 * surely failed, or its reply was lost or came after the command timeout. KEYS: the code's slot
 * key, its own key, idempotency, counters... ARGV: now, id, the id's stamp, app tag, then per
 * counter its increment (0|1). Returns 1 when it withdrew the code, 0 when there was none.
 *
 * Only a code that exists is withdrawn, and only then are its counters refunded: an issue that
 * never ran (or was refused) counted nothing, and a withdraw retried after its own reply was lost
 * must not refund twice. The pending code the issue superseded (named under d:<id>) gets the slot
 * back, pending again, unless another code has taken the slot since: a failed resend leaves the
 * code already delivered valid, as a rolled-back SQLite transaction does.
 */
const WITHDRAW = `${COUNTERS}${CODES}${REPLAYS}
local now = tonumber(ARGV[1])
local id = ARGV[2]
local app = ARGV[4]
local key, v = code_at(KEYS[1], KEYS[2], ARGV[3])
if not v then return 0 end
redis.call('DEL', key)
local seen = redis.call('GET', KEYS[3])
if seen and string.match(seen, '^%d+:%d+:([^:]*):') == id then
  redis.call('DEL', KEYS[3], first_answer_key(KEYS[3]))
end
local hint = app .. 'd:' .. id
local superseded = redis.call('GET', hint)
if superseded then
  redis.call('DEL', hint)
  local own = app .. 'c:' .. superseded
  local held = redis.call('GET', own)
  local ttl = redis.call('PTTL', own)
  if key == KEYS[1] and held and string.sub(held, 1, 1) == 's' and ttl > 0 then
    redis.call('SET', KEYS[1], 'p' .. string.sub(held, 2), 'PX', ttl)
    redis.call('DEL', own)
  end
end
for i = 1, #KEYS - 3 do
  if ARGV[4 + i] == '1' then refund_counter(KEYS[3 + i], now) end
end
return 1
`;

/**
 * consumeAttempt. By id (ARGV[2] '0'): KEYS: the id's slot key, its own key; ARGV[6]: the id's
 * stamp. By slot (ARGV[2] '1'): KEYS: the slot's key under each of its tags, newest secret
 * first (then its former key's, `SlotAddress.formerSlotKey`); ARGV[6]: the slot's signature
 * (redis-code-codec.ts) of the recipient as its key folds it. ARGV: now, by slot, app tag, failure
 * budget limit, failure budget window ms, then that.
 * Returns {'not_found'} | {'refused', reason, code, slot key index, ms left?}
 * | {'counted', code, slot key index} (the index of the key the code was under; 0 by id).
 */
const CONSUME_ATTEMPT = `${COUNTERS}${CODE_HEADER}${CODES}
local now = tonumber(ARGV[1])
local by_slot = ARGV[2] == '1'
local tag = ARGV[3]
local key, v, found = nil, nil, 0
local status, attempts, max_attempts, expires, channel, to_bytes, to_start
if by_slot then
  -- By recipient only a pending code counts, as in SQLite (its query selects status 'pending'). Its
  -- slot signature must match too: a tag shared with another slot never hands out that slot's code.
  -- The signature comes with the recipient folded as the slot's key folds it (ASCII case), the
  -- code keeps the address it went to: folded here the same way (string.lower is ASCII-only).
  for i = 1, #KEYS do
    local candidate = redis.call('GET', KEYS[i])
    if candidate and string.sub(candidate, 1, 1) == 'p' then
      status, attempts, max_attempts, expires, channel, to_bytes, to_start = string.match(candidate, HEADER)
      local signature_from = to_start - #to_bytes - 2
      if string.lower(string.sub(candidate, signature_from, signature_from + #ARGV[6] - 1)) == ARGV[6] then
        key, v, found = KEYS[i], candidate, i
        break
      end
    end
  end
  if not v then return {'not_found'} end
else
  key, v = code_at(KEYS[1], KEYS[2], ARGV[6])
  if not v then return {'not_found'} end
  status, attempts, max_attempts, expires, channel, to_bytes, to_start = string.match(v, HEADER)
  if status ~= 'p' then return {'refused', status, v, found} end
end
if now >= tonumber(expires, 36) then return {'refused', 'expired', v, found} end
local attempts_digits = #attempts
attempts = tonumber(attempts)
if attempts >= tonumber(max_attempts) then return {'refused', 'max_attempts', v, found} end
-- failedChecksKey(channel, to) of core/verification/keys.ts: "f:<channel>:<address>", an email
-- address in ASCII lower case (string.lower folds ASCII only, as the accounts' lower() does).
local to = string.sub(v, to_start, to_start + tonumber(to_bytes) - 1)
local failure_key = tag .. 'n:f:' .. (channel == 'e' and 'email:' .. string.lower(to) or 'sms:' .. to)
local failures, reset_at = read_counter(failure_key, now)
if reset_at ~= 0 and failures >= tonumber(ARGV[4]) then
  return {'refused', 'failure_budget', v, found, reset_at - now}
end
-- Count the attempt before the caller compares: concurrent guesses can never pass the cap.
local counted = status .. (attempts + 1) .. string.sub(v, 2 + attempts_digits)
redis.call('SET', key, counted, 'KEEPTTL')
count_hit(failure_key, failures, reset_at, tonumber(ARGV[5]), now)
return {'counted', counted, found}
`;

/**
 * approve. KEYS: the id's slot key, its own key, token, failure counter. ARGV: now, token value,
 * token TTL ms, the id's stamp. Returns 1 once.
 */
const APPROVE = `${COUNTERS}${CODES}
local key, v = code_at(KEYS[1], KEYS[2], ARGV[4])
if not v or string.sub(v, 1, 1) ~= 'p' then return 0 end
redis.call('SET', key, 'a' .. string.sub(v, 2), 'KEEPTTL')
redis.call('SET', KEYS[3], ARGV[2], 'PX', ARGV[3])
refund_counter(KEYS[4], tonumber(ARGV[1]))
return 1
`;

/**
 * cancel. KEYS: the id's slot key, its own key. ARGV: the id's stamp, now. Returns the code as it
 * stands afterwards, or nil. Only a live code is canceled, as in SQLite: an expired or exhausted
 * one keeps the status that explains it.
 */
const CANCEL = `${CODE_HEADER}${CODES}
local key, v = code_at(KEYS[1], KEYS[2], ARGV[1])
if not v then return false end
local status, attempts, max_attempts, expires = string.match(v, HEADER)
if status == 'p' and tonumber(ARGV[2]) < tonumber(expires, 36) and tonumber(attempts) < tonumber(max_attempts) then
  v = 'c' .. string.sub(v, 2)
  redis.call('SET', key, v, 'KEEPTTL')
end
return v
`;

/**
 * refundAttempt. KEYS: the id's slot key, its own key, failure counter. ARGV: now, the id's stamp.
 * Takes one attempt back from the code (never below zero, whatever its status) and one failure.
 */
const REFUND_ATTEMPT = `${COUNTERS}${CODE_HEADER}${CODES}
local key, v = code_at(KEYS[1], KEYS[2], ARGV[2])
if v then
  local status, attempts = string.match(v, HEADER)
  local n = tonumber(attempts)
  if n > 0 then redis.call('SET', key, status .. (n - 1) .. string.sub(v, 2 + #attempts), 'KEEPTTL') end
end
refund_counter(KEYS[3], tonumber(ARGV[1]))
return 1
`;

/** hit. KEYS: counter. ARGV: now, window ms. Returns {count, resetAtMs}. */
const HIT = `${COUNTERS}
local c, r = hit_counter(KEYS[1], tonumber(ARGV[2]), tonumber(ARGV[1]))
return {c, r}
`;

/**
 * refund. KEYS: counter. ARGV: the end of the window the hit was counted in. Gives one back to
 * that window only; nothing below zero.
 */
const REFUND = `
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local c, r = string.match(v, '^(%d+):(%d+)$')
if r ~= ARGV[1] or tonumber(c) < 1 then return 0 end
redis.call('SET', KEYS[1], string.format('%d:%s', tonumber(c) - 1, r), 'KEEPTTL')
return 1
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
  vdReplayBuffer: ScriptCall;
  vdWithdraw: ScriptCall;
  vdConfirm: ScriptCall;
  vdConsumeAttemptBuffer: ScriptCall;
  vdApprove: ScriptCall;
  vdCancelBuffer: ScriptCall;
  vdRefundAttempt: ScriptCall;
  vdHit: ScriptCall;
  vdRefund: ScriptCall;
  vdTakeTry: ScriptCall;
  vdConsumeChallenge: ScriptCall;
}

const SCRIPTS: Record<string, string> = {
  vdIssue: ISSUE,
  vdReplay: REPLAY,
  vdWithdraw: WITHDRAW,
  vdConfirm: CONFIRM,
  vdConsumeAttempt: CONSUME_ATTEMPT,
  vdApprove: APPROVE,
  vdCancel: CANCEL,
  vdRefundAttempt: REFUND_ATTEMPT,
  vdHit: HIT,
  vdRefund: REFUND,
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
