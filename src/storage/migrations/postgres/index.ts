/**
 * Versioned PostgreSQL migrations of the cluster mode's durable state, applied in order (all
 * pending ones in one transaction, under an advisory lock, so processes starting together migrate
 * once). Never edit a released migration; add the next version.
 *
 * The tables mirror the SQLite migrations' durable tables, column for column, with timestamps as
 * bigint milliseconds. The hot tables of SQLite (codes, counters, tokens, idempotency, captcha
 * challenges and passes) have no counterpart: in cluster mode that state lives in Redis.
 */
export const POSTGRES_MIGRATIONS: { version: number; name: string; sql: string }[] = [
  {
    version: 1,
    name: "initial",
    sql: `
CREATE TABLE apps (
  id text PRIMARY KEY,
  client_id text NOT NULL UNIQUE,
  data jsonb NOT NULL
);
CREATE TABLE app_keys (
  key_hash text PRIMARY KEY,
  app_id text NOT NULL
);
CREATE INDEX app_keys_app ON app_keys (app_id);

CREATE TABLE outbox (
  id text PRIMARY KEY,
  app_id text NOT NULL,
  verification_id text NOT NULL,
  channel text NOT NULL,
  recipient text NOT NULL,
  purpose text NOT NULL,
  locale text NOT NULL,
  sealed_code text,
  created_at bigint NOT NULL,
  deliver_before bigint NOT NULL,
  attempts integer NOT NULL DEFAULT 0,
  next_attempt_at bigint NOT NULL,
  claimed_until bigint,
  status text NOT NULL DEFAULT 'queued'
);
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE status = 'queued';
CREATE INDEX outbox_finished ON outbox (created_at) WHERE status <> 'queued';

CREATE TABLE deliveries (
  id bigserial PRIMARY KEY,
  app_id text NOT NULL,
  verification_id text NOT NULL,
  message_id text NOT NULL,
  provider text NOT NULL,
  status text NOT NULL,
  at bigint NOT NULL,
  error text,
  provider_message_id text
);
CREATE INDEX deliveries_verification ON deliveries (verification_id);
CREATE INDEX deliveries_provider_message ON deliveries (provider, provider_message_id)
  WHERE provider_message_id IS NOT NULL;
CREATE INDEX deliveries_at ON deliveries (at);

CREATE TABLE accounts (
  id text PRIMARY KEY,
  app_id text NOT NULL,
  email text,
  phone text,
  username text,
  password_hash text,
  profile jsonb NOT NULL,
  created_at bigint NOT NULL
);
CREATE UNIQUE INDEX accounts_email ON accounts (app_id, email) WHERE email IS NOT NULL;
CREATE UNIQUE INDEX accounts_phone ON accounts (app_id, phone) WHERE phone IS NOT NULL;
CREATE UNIQUE INDEX accounts_username ON accounts (app_id, username) WHERE username IS NOT NULL;

CREATE TABLE sessions (
  token_hash text PRIMARY KEY,
  app_id text NOT NULL,
  account_id text NOT NULL,
  expires_at bigint NOT NULL
);
CREATE INDEX sessions_expires_at ON sessions (expires_at);

CREATE TABLE dev_inbox (
  seq bigserial PRIMARY KEY,
  id text NOT NULL UNIQUE,
  app_id text NOT NULL,
  channel text NOT NULL,
  recipient text NOT NULL,
  subject text NOT NULL,
  text text NOT NULL,
  code text NOT NULL,
  created_at bigint NOT NULL
);
CREATE INDEX dev_inbox_recipient ON dev_inbox (recipient, created_at);
CREATE INDEX dev_inbox_created_at ON dev_inbox (created_at);

CREATE TABLE send_log (
  id bigserial PRIMARY KEY,
  at bigint NOT NULL,
  app_id text NOT NULL,
  face text NOT NULL,
  channel text,
  recipient text,
  country text,
  ip text,
  device_id text,
  purpose text,
  decision text NOT NULL,
  reason text,
  shadowed text,
  verification_id text
);
CREATE INDEX send_log_app_at ON send_log (app_id, at);
CREATE INDEX send_log_at ON send_log (at);
`,
  },
  {
    version: 2,
    name: "send log rows count merged repeats",
    sql: `
ALTER TABLE send_log ADD COLUMN decision_count INTEGER NOT NULL DEFAULT 1;
`,
  },
  {
    version: 3,
    name: "accounts remember a deletion request",
    sql: `
ALTER TABLE accounts ADD COLUMN deletion_requested_at bigint;
`,
  },
  {
    version: 4,
    name: "sessions end with the credentials they were opened under",
    // As SQLite's migration 7: a new password moves the account's credential version on.
    sql: `
ALTER TABLE accounts ADD COLUMN credential_version integer NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN credential_version integer NOT NULL DEFAULT 0;
CREATE INDEX sessions_account ON sessions (app_id, account_id);
`,
  },
  {
    version: 5,
    name: "sessions remember the token they were rotated from",
    // As SQLite's migration 9. Rotated in place, a session keeps its row: a new password's write
    // and a refresh meet on that row's lock, in either order.
    sql: `
ALTER TABLE sessions ADD COLUMN rotated_from text;
`,
  },
  {
    version: 6,
    name: "apps list only the API keys that reach them",
    // As SQLite's migration 10: a save used to move a key another app held (ON CONFLICT DO
    // UPDATE) and now refuses it, so each app's document keeps only the keys app_keys gives it.
    sql: `
UPDATE apps SET data = jsonb_set(data, '{apiKeyHashes}', COALESCE((
  SELECT jsonb_agg(listed.hash ORDER BY listed.position)
  FROM jsonb_array_elements_text(apps.data -> 'apiKeyHashes') WITH ORDINALITY AS listed (hash, position)
  WHERE EXISTS (SELECT 1 FROM app_keys WHERE key_hash = listed.hash AND app_id = apps.id)
), '[]'::jsonb))
WHERE EXISTS (
  SELECT 1 FROM jsonb_array_elements_text(apps.data -> 'apiKeyHashes') AS listed (hash)
  WHERE NOT EXISTS (SELECT 1 FROM app_keys WHERE key_hash = listed.hash AND app_id = apps.id)
);
`,
  },
  {
    version: 7,
    name: "one account per mailbox, whatever the case of its address",
    // As SQLite's migration 11: email_key is the address with ASCII letters folded, as SQLite's
    // lower() folds them (under COLLATE "C" PostgreSQL's lower() folds only ASCII too), so both
    // backends find the same accounts. The column's own collation is "C", the one lower() gives
    // it: a look-up compares under that collation, and an index can serve only its own.
    // An address stored with its domain's root dot, or IDNA's other full stops in its domain
    // (earlier versions kept them), is keyed as addresses are now normalised; its local part is
    // kept as it is.
    // Earlier versions let second accounts in beside the first of a mailbox: only the oldest gets
    // the key, or the unique index could not be built; a younger one keeps a NULL key and stays
    // reachable by its exact spelling (postgres-account-directory.ts `byEmail`).
    sql: `
ALTER TABLE accounts ADD COLUMN email_key text COLLATE "C";
UPDATE accounts SET email_key = lower(
  (split_part(accounts.email, '@', 1) || '@' || rtrim(translate(split_part(accounts.email, '@', 2), '。．｡', '...'), '.'))
  COLLATE "C"
)
FROM (
  SELECT id, row_number() OVER (
    PARTITION BY app_id, lower(
      (split_part(email, '@', 1) || '@' || rtrim(translate(split_part(email, '@', 2), '。．｡', '...'), '.'))
      COLLATE "C"
    )
    ORDER BY created_at, id COLLATE "C"
  ) AS age
  FROM accounts WHERE email IS NOT NULL
) AS ranked
WHERE accounts.id = ranked.id AND ranked.age = 1;
CREATE UNIQUE INDEX accounts_email_key ON accounts (app_id, email_key) WHERE email_key IS NOT NULL;
`,
  },
  {
    version: 8,
    name: "the dev inbox finds an address in any ASCII case",
    // As SQLite's migration 12: looked up with ASCII letters folded (lower() under COLLATE "C"
    // folds only ASCII, as SQLite's does), by an index that replaces the one by spelling.
    sql: `
DROP INDEX dev_inbox_recipient;
CREATE INDEX dev_inbox_recipient_folded ON dev_inbox (lower(recipient COLLATE "C"), created_at);
`,
  },
  {
    version: 9,
    name: "accounts whose email key is not their address's are found at start",
    // As SQLite's migration 13: an older process still serving beside migration 7 inserts
    // accounts without email_key and moves an address without its key; every server start
    // settles those rows (postgres-account-directory.ts `settleEmailKeys`), reading only the rows
    // this index holds. The predicate is migration 7's key; the start's statements repeat it, so
    // the planner proves the index usable.
    sql: `
CREATE INDEX accounts_email_key_unsettled ON accounts (app_id)
WHERE email_key IS DISTINCT FROM lower(
  (split_part(email, '@', 1) || '@' || rtrim(translate(split_part(email, '@', 2), '。．｡', '...'), '.'))
  COLLATE "C"
);
`,
  },
  {
    version: 10,
    name: "a refresh token used again after its rotation is found",
    // As SQLite's migration 14: a rotated refresh token presented again ends the session it was
    // rotated into, found by the token it was rotated from, through this index (made-up tokens
    // are looked up too). Sessions never rotated are not in it.
    sql: `
CREATE INDEX sessions_rotated_from ON sessions (app_id, rotated_from) WHERE rotated_from IS NOT NULL;
`,
  },
  {
    version: 11,
    name: "a refresh token used again after any number of rotations is found",
    // As SQLite's migration 15: every token of a rotating session carries its chain, and a token
    // presented after its rotation ends the session of its chain, found through this index.
    sql: `
ALTER TABLE sessions ADD COLUMN chain text;
CREATE INDEX sessions_chain ON sessions (app_id, chain) WHERE chain IS NOT NULL;
`,
  },
  {
    version: 12,
    name: "the cluster's processes share dev mode's generated secret",
    // No SQLite counterpart: an embedded server keeps its dev secret in its data dir. In cluster
    // mode each process has a data dir of its own, so the one secret all of them need (a code sent
    // through one is checked on another) is kept here, one row, inserted by the first to start.
    // Shorter than VERIFYD_SECRET's floor, every code and sealed setting would be guessable.
    sql: `
CREATE TABLE dev_secret (
  only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
  secret text NOT NULL CHECK (length(secret) >= 16),
  created_at bigint NOT NULL
);
`,
  },
];
