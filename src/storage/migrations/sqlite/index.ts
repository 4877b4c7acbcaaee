/**
 * Versioned SQLite migrations, applied in order inside one transaction each. Never edit a
 * released migration; add the next version.
 */
export const SQLITE_MIGRATIONS: { version: number; name: string; sql: string }[] = [
  {
    version: 1,
    name: "initial",
    sql: `
CREATE TABLE apps (
  id TEXT PRIMARY KEY,
  client_id TEXT NOT NULL UNIQUE,
  data TEXT NOT NULL
);
CREATE TABLE app_keys (
  key_hash TEXT PRIMARY KEY,
  app_id TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE codes (
  id TEXT PRIMARY KEY,
  app_id TEXT NOT NULL,
  slot TEXT NOT NULL,
  channel TEXT NOT NULL,
  recipient TEXT NOT NULL,
  purpose TEXT NOT NULL,
  token_purposes TEXT NOT NULL,
  code_hash TEXT NOT NULL,
  status TEXT NOT NULL,
  attempts INTEGER NOT NULL,
  max_attempts INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  locale TEXT NOT NULL,
  account_id TEXT
);
CREATE INDEX codes_pending_slot ON codes (app_id, slot) WHERE status = 'pending';
CREATE INDEX codes_expires_at ON codes (expires_at);

CREATE TABLE counters (
  app_id TEXT NOT NULL,
  key TEXT NOT NULL,
  count INTEGER NOT NULL,
  reset_at INTEGER NOT NULL,
  PRIMARY KEY (app_id, key)
) WITHOUT ROWID;

CREATE TABLE tokens (
  token_hash TEXT PRIMARY KEY,
  app_id TEXT NOT NULL,
  verification_id TEXT NOT NULL,
  channel TEXT NOT NULL,
  recipient TEXT NOT NULL,
  purposes TEXT NOT NULL,
  expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX tokens_expires_at ON tokens (expires_at);

CREATE TABLE idempotency (
  app_id TEXT NOT NULL,
  key TEXT NOT NULL,
  verification_id TEXT NOT NULL,
  fingerprint TEXT NOT NULL,
  resend_after INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  PRIMARY KEY (app_id, key)
) WITHOUT ROWID;
CREATE INDEX idempotency_expires_at ON idempotency (expires_at);

CREATE TABLE outbox (
  id TEXT PRIMARY KEY,
  app_id TEXT NOT NULL,
  verification_id TEXT NOT NULL,
  channel TEXT NOT NULL,
  recipient TEXT NOT NULL,
  purpose TEXT NOT NULL,
  locale TEXT NOT NULL,
  sealed_code TEXT,
  created_at INTEGER NOT NULL,
  deliver_before INTEGER NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at INTEGER NOT NULL,
  claimed_until INTEGER,
  status TEXT NOT NULL DEFAULT 'queued'
);
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE status = 'queued';
CREATE INDEX outbox_finished ON outbox (created_at) WHERE status <> 'queued';

CREATE TABLE deliveries (
  id INTEGER PRIMARY KEY,
  app_id TEXT NOT NULL,
  verification_id TEXT NOT NULL,
  message_id TEXT NOT NULL,
  provider TEXT NOT NULL,
  status TEXT NOT NULL,
  at INTEGER NOT NULL,
  error TEXT,
  provider_message_id TEXT
);
CREATE INDEX deliveries_verification ON deliveries (verification_id);
CREATE INDEX deliveries_provider_message ON deliveries (provider, provider_message_id) WHERE provider_message_id IS NOT NULL;
CREATE INDEX deliveries_at ON deliveries (at);

CREATE TABLE accounts (
  id TEXT PRIMARY KEY,
  app_id TEXT NOT NULL,
  email TEXT,
  phone TEXT,
  username TEXT,
  password_hash TEXT,
  profile TEXT NOT NULL,
  created_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX accounts_email ON accounts (app_id, email) WHERE email IS NOT NULL;
CREATE UNIQUE INDEX accounts_phone ON accounts (app_id, phone) WHERE phone IS NOT NULL;
CREATE UNIQUE INDEX accounts_username ON accounts (app_id, username) WHERE username IS NOT NULL;

CREATE TABLE sessions (
  token_hash TEXT PRIMARY KEY,
  app_id TEXT NOT NULL,
  account_id TEXT NOT NULL,
  expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX sessions_expires_at ON sessions (expires_at);

CREATE TABLE dev_inbox (
  id TEXT PRIMARY KEY,
  app_id TEXT NOT NULL,
  channel TEXT NOT NULL,
  recipient TEXT NOT NULL,
  subject TEXT NOT NULL,
  text TEXT NOT NULL,
  code TEXT NOT NULL,
  created_at INTEGER NOT NULL
);
CREATE INDEX dev_inbox_recipient ON dev_inbox (recipient, created_at);
CREATE INDEX dev_inbox_created_at ON dev_inbox (created_at);
`,
  },
  {
    version: 2,
    name: "captcha and send log",
    sql: `
CREATE TABLE captcha_challenges (
  token TEXT PRIMARY KEY,
  app_id TEXT NOT NULL,
  kind TEXT NOT NULL,
  answer_hash TEXT NOT NULL,
  client_key TEXT,
  tries_left INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  dev_answer TEXT
) WITHOUT ROWID;
CREATE INDEX captcha_challenges_expires_at ON captcha_challenges (expires_at);

CREATE TABLE captcha_passes (
  token_hash TEXT PRIMARY KEY,
  app_id TEXT NOT NULL,
  bound_to TEXT,
  expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX captcha_passes_expires_at ON captcha_passes (expires_at);

CREATE TABLE send_log (
  id INTEGER PRIMARY KEY,
  at INTEGER NOT NULL,
  app_id TEXT NOT NULL,
  face TEXT NOT NULL,
  channel TEXT,
  recipient TEXT,
  country TEXT,
  ip TEXT,
  device_id TEXT,
  purpose TEXT,
  decision TEXT NOT NULL,
  reason TEXT,
  shadowed TEXT,
  verification_id TEXT
);
CREATE INDEX send_log_app_at ON send_log (app_id, at);
CREATE INDEX send_log_at ON send_log (at);
`,
  },
  {
    version: 3,
    name: "send log rows count merged repeats",
    sql: `
ALTER TABLE send_log ADD COLUMN decision_count INTEGER NOT NULL DEFAULT 1;
`,
  },
  {
    version: 4,
    name: "codes slot index covers every status",
    // A partial index (pending codes only) lost its entry whenever a code left pending, so every
    // approval dirtied a page of it at a random place (slots are keyed hashes); indexing every
    // status leaves approvals to the code's own row. A slot holds few codes (rate limits bound its
    // sends), so the status test on the slot's rows costs lookups nothing measurable. Ordered by
    // time within the slot, the index gives a check by recipient its newest code without a sort.
    sql: `
DROP INDEX codes_pending_slot;
CREATE INDEX codes_slot ON codes (app_id, slot, created_at);
`,
  },
  {
    version: 5,
    name: "tokens purged by their key",
    // Tokens are keyed by their expiry first (core/ids.ts `newTimeOrderedSecret`), so the purger
    // deletes the expired ones by key range, and no index of expiry is written on every approval.
    // Keys of the format before time-ordered tokens (a bare SHA-256) would fall outside that range:
    // every such token expired weeks ago, and goes now.
    sql: `
DROP INDEX tokens_expires_at;
DELETE FROM tokens WHERE length(token_hash) = 64;
`,
  },
  {
    version: 6,
    name: "accounts remember a deletion request",
    sql: `
ALTER TABLE accounts ADD COLUMN deletion_requested_at INTEGER;
`,
  },
  {
    version: 7,
    name: "sessions end with the credentials they were opened under",
    // A new password ends the account's other sessions: it moves the account's credential version
    // on, and a session opened under an older one no longer logs in (even one a login in flight
    // opens after the change); the same write deletes them, found by account.
    sql: `
ALTER TABLE accounts ADD COLUMN credential_version INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN credential_version INTEGER NOT NULL DEFAULT 0;
CREATE INDEX sessions_account ON sessions (app_id, account_id);
`,
  },
  {
    version: 8,
    name: "send log purged by rowid",
    // The purger finds the send log's oldest rows by rowid (sqlite-purger.ts); the time index was
    // written by every decision logged and read by nothing else.
    sql: `
DROP INDEX send_log_at;
`,
  },
  {
    version: 9,
    name: "sessions remember the token they were rotated from",
    // A refresh rotates a session in place (CloudBase); a new password that keeps the caller's
    // session keeps it under its new token too, even when the refresh came in between.
    sql: `
ALTER TABLE sessions ADD COLUMN rotated_from TEXT;
`,
  },
  {
    version: 10,
    name: "apps list only the API keys that reach them",
    // A save used to move a key another app held to the saved app (INSERT OR REPLACE), leaving
    // the first app's document listing a key that no longer reached it. Saves now refuse such a
    // key, so that app could never be saved again (not even disabled): its document keeps only the
    // keys app_keys gives it, which are the ones that authenticated it all along.
    sql: `
UPDATE apps SET data = json_set(data, '$.apiKeyHashes', json((
  SELECT json_group_array(listed.value) FROM json_each(apps.data, '$.apiKeyHashes') AS listed
  WHERE EXISTS (SELECT 1 FROM app_keys WHERE key_hash = listed.value AND app_id = apps.id)
)))
WHERE EXISTS (
  SELECT 1 FROM json_each(apps.data, '$.apiKeyHashes') AS listed
  WHERE NOT EXISTS (SELECT 1 FROM app_keys WHERE key_hash = listed.value AND app_id = apps.id)
);
`,
  },
  {
    version: 11,
    name: "one account per mailbox, whatever the case of its address",
    // Rate limits count Ann@example.com and ann@example.com as one mailbox; accounts were keyed by
    // the exact spelling, so a look-up in another case found no account and a sign-up made a
    // second one. email_key is the address with ASCII letters folded (SQLite's lower() folds only
    // ASCII, as PostgreSQL's lower() under COLLATE "C" does), computed here in SQL, never in JS.
    // An address stored with its domain's root dot (`ann@example.com.`, which earlier versions
    // kept; or IDNA's other full stops, `。．｡`, in its domain) is keyed as addresses are now
    // normalised, so it is found again; its local part is kept as it is (the addresses stored
    // have one '@'; the part before it is never rewritten).
    // Earlier versions let such second accounts in: only the oldest of each mailbox gets the key,
    // or the unique index could not be built. A younger one keeps a NULL key and stays reachable
    // by its exact spelling (sqlite-account-directory.ts `byEmail`).
    sql: `
ALTER TABLE accounts ADD COLUMN email_key TEXT;
UPDATE accounts SET email_key = lower(
  substr(email, 1, instr(email, '@'))
  || rtrim(replace(replace(replace(substr(email, instr(email, '@') + 1), '。', '.'), '．', '.'), '｡', '.'), '.')
)
WHERE id IN (
  SELECT id FROM (
    SELECT id, row_number() OVER (
      PARTITION BY app_id, lower(
        substr(email, 1, instr(email, '@'))
        || rtrim(replace(replace(replace(substr(email, instr(email, '@') + 1), '。', '.'), '．', '.'), '｡', '.'), '.')
      )
      ORDER BY created_at, id
    ) AS age
    FROM accounts WHERE email IS NOT NULL
  ) WHERE age = 1
);
CREATE UNIQUE INDEX accounts_email_key ON accounts (app_id, email_key) WHERE email_key IS NOT NULL;
`,
  },
  {
    version: 12,
    name: "the dev inbox finds an address in any ASCII case",
    // Sends count Ann@example.com and ann@example.com as one recipient, but the inbox was looked
    // up by the exact spelling stored, so a test asking in another case found nothing. The index
    // replaces the one by spelling, so a delivery to the inbox writes no more than before.
    sql: `
DROP INDEX dev_inbox_recipient;
CREATE INDEX dev_inbox_recipient_folded ON dev_inbox (lower(recipient), created_at);
`,
  },
  {
    version: 13,
    name: "accounts whose email key is not their address's are found at start",
    // Migration 11 runs while an older server still serves (`verifyd migrate`, then a restart):
    // that server inserts accounts without email_key and moves an address without its key. Every
    // server start settles those rows (sqlite-account-directory.ts `settleEmailKeys`), reading
    // only the rows this index holds: the predicate is migration 11's key, and the start's
    // statements repeat it word for word (SQLite uses a partial index only then). This build
    // never writes such a row, so the index holds only the younger accounts migration 11 left
    // unkeyed, and a write to accounts costs one expression more.
    sql: `
CREATE INDEX accounts_email_key_unsettled ON accounts (app_id)
WHERE email_key IS NOT lower(
  substr(email, 1, instr(email, '@'))
  || rtrim(replace(replace(replace(substr(email, instr(email, '@') + 1), '。', '.'), '．', '.'), '｡', '.'), '.')
);
`,
  },
  {
    version: 14,
    name: "a refresh token used again after its rotation is found",
    // A rotated refresh token presented again ends the session it was rotated into (RFC 9700
    // §4.14.2), found by the token it was rotated from. That look-up answers every refresh and
    // revoke refused, made-up tokens too, so it reads an index. Partial: sessions never rotated
    // (every Fresns and IDaaS one) are not in it, and cost their writes nothing more.
    sql: `
CREATE INDEX sessions_rotated_from ON sessions (app_id, rotated_from) WHERE rotated_from IS NOT NULL;
`,
  },
  {
    version: 15,
    name: "a refresh token used again after any number of rotations is found",
    // Every token of a rotating session carries the session's chain, its first login's random
    // tag: a token presented after its rotation ends the session of its chain however many
    // rotations ago it was replaced (migration 14 found only the last one's). Read by this index,
    // as made-up tokens are looked up too; sessions that never rotate have no chain.
    sql: `
ALTER TABLE sessions ADD COLUMN chain TEXT;
CREATE INDEX sessions_chain ON sessions (app_id, chain) WHERE chain IS NOT NULL;
`,
  },
];
