/**
 * The ports core needs from the outside world. Adapters in storage/, delivery/ and captcha/
 * implement them; main.ts picks the implementations. Every method that changes state documents
 * what it does atomically, because the guarantees (single use, attempt cap, rate limits) rest on it.
 */
import type {
  Account,
  App,
  Channel,
  CodeRecord,
  DeliveryRecord,
  OutboxMessage,
  Purpose,
  TokenRecord,
} from "./types.js";

export interface Clock {
  nowMs(): number;
}

export interface Logger {
  debug(object: object, message?: string): void;
  info(object: object, message?: string): void;
  warn(object: object, message?: string): void;
  error(object: object, message?: string): void;
}

/** What a counter's refusal means to the caller. */
export type CounterKind =
  /** a rate rule: RATE_LIMITED / RESEND_TOO_SOON */
  | "limit"
  /** a risk rule: CAPTCHA_REQUIRED (a solved captcha waives it) */
  | "captcha"
  /** the SMS-pumping guard: PUMPING_DENIED */
  | "deny";

/** A counter checked and counted by `VerificationStore.issue`. Keys are app-relative. */
export interface CounterCheck {
  /** app-relative key, e.g. `r:email:a@example.com:60` */
  key: string;
  limit: number;
  windowSeconds: number;
  /** the rule's public name, reported when it refuses */
  rule: string;
  /** default "limit" */
  kind?: CounterKind;
  /** 0 = only checked, never counted (a block flag: refuses while its count exceeds `limit`); default 1 */
  increment?: 0 | 1;
  /** counted, never refuses; reported in `shadowed` when it would have (shadow mode, waived rules) */
  shadow?: boolean;
}

/** The failed-checks rule of a recipient: `limit` wrong checks per `windowSeconds`, across codes. */
export interface FailureBudget {
  limit: number;
  windowSeconds: number;
}

/** Where a slot's codes are filed (`Slot`, core/verification/keys.ts). */
export interface SlotAddress {
  /** (channel, recipient, purpose): at most one pending code per slot; a new one supersedes the old */
  slotKey: string;
  /**
   * Where the slot's key differs from what builds before it folded an email address's ASCII case
   * used (the address as typed), that key: a code such a build issued is still taken by a check
   * by recipient when `slotKey` has no pending code, and superseded by a send, for the rest of its
   * life (at most a day; this can go once no such build's code can be live).
   */
  formerSlotKey?: string | undefined;
  /**
   * The slot's tags under every secret, newest first (`CodeSecrets.slotTags`), then those of
   * `formerSlotKey`. A store keyed by tag (Redis) supersedes the slot's pending code under any of
   * them, and a check by recipient takes the first pending one in this order.
   */
  slotTags: string[];
}

export interface IssueRequest extends SlotAddress {
  appId: string;
  /** all checked first; counted only if all pass (a refusal consumes no budget) */
  counters: CounterCheck[];
  /** `code.id` carries the first of `slotTags` */
  code: CodeRecord;
  /** null for test recipients, which are never delivered */
  outbox: OutboxMessage | null;
  idempotency?: {
    key: string;
    fingerprint: string;
    /**
     * Only the first send's answer may be given (a retry presenting the captcha pass its first
     * attempt spent): where there is none to replay, the store writes nothing and answers
     * `not_replayed`, so a spent pass never buys a new code.
     */
    replayOnly?: boolean;
  };
}

export type IssueOutcome =
  /** `shadowed`: rules marked `shadow` that would have refused */
  | { kind: "issued"; resendAfterSeconds: number; shadowed: string[] }
  | { kind: "refused"; rule: string; refusal: CounterKind; retryAfterSeconds: number }
  | { kind: "replayed"; record: CodeRecord; resendAfterSeconds: number; fingerprint: string }
  /** `idempotency.replayOnly` and nothing to replay */
  | { kind: "not_replayed" }
  /**
   * the first send under this Idempotency-Key is not committed yet (cluster mode): try again
   * shortly; `fingerprint` is that send's, so a retry that is another request is told so at once
   */
  | { kind: "in_progress"; fingerprint: string };

export type ReplayOutcome = Extract<IssueOutcome, { kind: "replayed" | "in_progress" }>;

/** A code by its verification id, or a slot's pending code by its key and tags (as in IssueRequest). */
export type CodeRef = { appId: string; id: string } | ({ appId: string } & SlotAddress);

export type AttemptRefusal =
  | "expired"
  | "superseded"
  | "canceled"
  | "approved"
  | "max_attempts"
  | "failure_budget";

export type AttemptOutcome =
  | { kind: "not_found" }
  | { kind: "refused"; record: CodeRecord; reason: AttemptRefusal; retryAfterSeconds?: number }
  /** the attempt is counted; `record.attempts` already includes it */
  | { kind: "counted"; record: CodeRecord };

/**
 * Hot verification state plus the send's durable outbox row (the seam DESIGN.md describes:
 * embedded does all of `issue` in one SQLite transaction; cluster does Redis then PostgreSQL and
 * withdraws the code if the commit fails).
 */
export interface VerificationStore {
  /**
   * Atomically: replay an idempotent request if its key is known; else check every counter and
   * refuse if any would pass its limit (counting nothing); else count them all, mark the slot's
   * pending code superseded, save the code and enqueue the outbox row. Resolves only after the
   * outbox row is durable. `resendAfterSeconds` is how long until the same request may succeed.
   */
  issue(request: IssueRequest, nowMs: number): Promise<IssueOutcome>;
  /**
   * The answer an Idempotency-Key replays, as `issue` would give it; null when it names no send
   * (or one whose code is gone). For a send refused before the store is asked: the retry of one
   * that went through gets its first answer, though the account it was for exists now.
   */
  replay(appId: string, key: string, nowMs: number): Promise<ReplayOutcome | null>;

  /**
   * Counts one attempt *before* the caller compares the code, in one atomic step: refuses when the
   * code is not pending, expired or out of attempts, or the recipient's failed-check budget is
   * spent; otherwise increments the code's attempts and the recipient's failure counter (refunded
   * by `approve` / `refundAttempt` when the code turns out right). Incrementing first means
   * concurrent guesses can never exceed the cap. The failure counter's key is
   * `failedChecksKey(record.channel, record.to)` (core/verification/keys.ts).
   */
  consumeAttempt(ref: CodeRef, failureBudget: FailureBudget, nowMs: number): Promise<AttemptOutcome>;

  /**
   * Marks a pending code approved and saves its token, refunding the failure count of this
   * attempt. Succeeds for exactly one caller even under concurrent checks.
   */
  approve(appId: string, id: string, token: TokenRecord, failureKey: string, nowMs: number): Promise<boolean>;

  /**
   * Optional one-step check for a store that can call back synchronously inside its atomic step:
   * refuses as `consumeAttempt` does, then asks `judge` (which compares the code in constant time)
   * with the attempt counted; when it returns a token the code is approved and the token saved,
   * otherwise the attempt and a failure are counted, all in that same step, so nothing observes
   * the code between the count and the judgement (a right code never raises the failure count).
   * `approved` outcomes carry the approved record. One transaction per check instead of two.
   */
  attemptAndApprove?(
    ref: CodeRef,
    failureBudget: FailureBudget,
    nowMs: number,
    judge: (record: CodeRecord) => TokenRecord | null,
  ): Promise<AttemptOutcome | { kind: "approved"; record: CodeRecord }>;

  /**
   * Takes back, in one atomic step, one attempt of the code `id` (never below zero, whatever its
   * status) and one count of the recipient's failure counter: for an attempt that turned out to
   * reveal nothing and spend nothing (a right peek leaves its code pending). A code's attempts are
   * then its wrong checks plus the checks still being judged, so the cap on wrong checks holds.
   */
  refundAttempt(appId: string, id: string, failureKey: string, nowMs: number): Promise<void>;

  get(appId: string, id: string): Promise<CodeRecord | null>;

  /** Marks a pending code canceled; returns the record as it stands afterwards, or null if unknown. */
  cancel(appId: string, id: string, nowMs: number): Promise<CodeRecord | null>;

  findToken(appId: string, tokenHash: string, nowMs: number): Promise<TokenRecord | null>;

  /** Deletes the token; true for exactly one caller (single use). */
  consumeToken(appId: string, tokenHash: string, nowMs: number): Promise<boolean>;

  deliveries(appId: string, verificationId: string): Promise<DeliveryRecord[]>;

  /**
   * A counter's value as of a recent commit, from memory, or null when the store does not know it
   * without a read. May lag behind (lower), never run ahead: a refusal decided on it is always one
   * the full check would make too. Optional: a store without a cheap answer leaves it out.
   */
  committedCount?(appId: string, key: string, nowMs: number): CounterState | null;
}

/** The durable outbox the delivery worker drains. */
export interface OutboxStore {
  /**
   * Claims up to `limit` due messages for `leaseMs`; a message is claimed by one worker at a time
   * (even across processes), and a crashed worker's claim lapses when its lease ends.
   */
  claim(limit: number, leaseMs: number, nowMs: number): Promise<OutboxMessage[]>;
  /** Delivered to a provider: erases the sealed code and records the delivery. */
  markSent(message: OutboxMessage, delivery: DeliveryRecord): Promise<void>;
  /**
   * Failed for now: records the failed try and schedules the next one. A settle may come late,
   * after the lease (the worker writes it again until the store takes it): it reschedules only
   * the claim it ends, never one taken since (`message.attempts` no longer the stored count); a
   * late markSent or markFailed still ends a message that is queued.
   */
  markRetry(message: OutboxMessage, delivery: DeliveryRecord, nextAttemptAtMs: number): Promise<void>;
  /**
   * Not tried now, for the same reason its delivery record already gives: schedules the next try
   * and records nothing (markRetry without a record, and like it only for the claim it ends).
   */
  postpone(message: OutboxMessage, nextAttemptAtMs: number): Promise<void>;
  /**
   * Gave up (permanent error, past its deadline, or an outcome the provider never confirmed):
   * erases the sealed code and records why.
   */
  markFailed(message: OutboxMessage, delivery: DeliveryRecord): Promise<void>;
  /** Updates a delivery's status from a receipt (SMPP deliver_sm, provider callbacks). */
  recordReceipt(provider: string, providerMessageId: string, delivery: DeliveryRecord): Promise<boolean>;
  /**
   * How many messages wait for delivery (queued, claimed ones included), from the index of due
   * messages: its cost grows with the queued messages, not the finished ones (a metrics scrape's).
   */
  queuedCount(): Promise<number>;
}

export interface CounterState {
  count: number;
  resetAtMs: number;
}

/**
 * Plain windowed counters for rules outside the send (login lockouts, abuse signals). A window
 * starts at its first hit (the TTL is applied only on creation, like better-auth `increment`).
 */
export interface CounterStore {
  /** Adds one atomically and returns the new state. */
  hit(appId: string, key: string, windowSeconds: number, nowMs: number): Promise<CounterState>;
  peek(appId: string, key: string, nowMs: number): Promise<CounterState>;
  /**
   * Gives one hit back (a hit that turned out not to count) to the window it was counted in, the
   * one ending at `resetAtMs`: not to a later one; never below zero. For counters outside a send:
   * the send's own are given back by the store that counts them.
   */
  refund(appId: string, key: string, resetAtMs: number): Promise<void>;
  reset(appId: string, key: string): Promise<void>;
}

export interface AppStore {
  get(id: string): Promise<App | null>;
  getByClientId(clientId: string): Promise<App | null>;
  getByApiKeyHash(apiKeyHash: string): Promise<App | null>;
  list(): Promise<App[]>;
  /** Creates or replaces the app with this id. */
  save(app: App): Promise<void>;
  /**
   * Stores a new app, atomically against every other write: false, with nothing written, when an
   * app already has its id or its client id (two `verifyd apps create` at once must not both take
   * one id, the second replacing the first and its printed key).
   */
  create(app: App): Promise<boolean>;
  /**
   * Replaces the app with `change` of it as stored, with no other write to it in between (a
   * read-then-save would lose one of two commands changing an app at once); the app as saved, or
   * null when there is no app `id`. `change` must keep the id.
   */
  update(id: string, change: (app: App) => App): Promise<App | null>;
}

export interface Session {
  tokenHash: string;
  appId: string;
  accountId: string;
  expiresAtMs: number;
  /** the account's `credentialVersion` as the login that opened it read it */
  credentialVersion: number;
  /** the random tag every token of a rotating session carries, kept across its rotations */
  chain?: string;
}

/** The fields of an account an update may write; absent ones are left as stored, null clears. */
export interface AccountChanges {
  email?: string;
  phone?: string;
  username?: string;
  passwordHash?: string;
  deletionRequestedAtMs?: number | null;
}

/** Accounts and their login sessions, for the account rules and the dialects' sign-up/sign-in. */
export interface AccountDirectory {
  findByContact(appId: string, channel: Channel, address: string): Promise<Account | null>;
  findById(appId: string, id: string): Promise<Account | null>;
  findByUsername(appId: string, username: string): Promise<Account | null>;
  /** Fails with ACCOUNT_EXISTS when the email (in any ASCII case), phone or username is taken in this app. */
  create(account: Account): Promise<Account>;
  /**
   * Removes an account and its sessions, to undo a sign-up whose proof was refused after the
   * account was written. Removing an unknown one is not an error.
   */
  delete(appId: string, id: string): Promise<void>;
  /**
   * Writes only the fields given, so that two edits of one account made from the same read both
   * stand. A new password hash, in the same transaction, moves `credentialVersion` on and ends the
   * account's sessions but `keepSessions` (token hashes), which move to the new version. With
   * `ifCredentialVersion` it writes only while the account is at that version. Returns the account
   * as stored afterwards, or null when there is none (or it is at another version). Fails with
   * ACCOUNT_EXISTS when a new email, phone or username is taken in this app.
   */
  update(
    appId: string,
    id: string,
    changes: AccountChanges,
    options?: { ifCredentialVersion?: number; keepSessions?: string[] },
  ): Promise<Account | null>;
  /**
   * Stores `toHash`, a new hash of the same password, in place of `fromHash`, only while the
   * account's hash is still `fromHash` (a new password set meanwhile wins), and changes nothing
   * else: not the credential version, not the sessions, which the same password leaves standing
   * (`update` with a password hash would end them). True when it wrote.
   */
  replacePasswordHash(appId: string, accountId: string, fromHash: string, toHash: string): Promise<boolean>;
  createSession(session: Session): Promise<void>;
  findSession(appId: string, tokenHash: string, nowMs: number): Promise<Session | null>;
  /**
   * Ends the account's session with this token hash, or the session a refresh has rotated from
   * it (`rotateSession`): a session refreshed while its sign-out is under way, or just before it,
   * must not live on under its new token. Matched within the account, which the store indexes
   * sessions by. Ending an unknown one is not an error.
   */
  deleteSession(appId: string, accountId: string, tokenHash: string): Promise<void>;
  /**
   * Rotates a live session to a new token in place, for exactly one of concurrent callers, and
   * returns it as it now is (the same account and credential version, the new token, expiry and
   * chain); null when it is unknown, expired or already rotated. The session remembers the token
   * it was rotated from, so a new password that keeps the old token keeps it too (`update`'s
   * `keepSessions`), whichever of the two came first. `next.chain` is stored as the session's
   * chain (a session opened before chains gets one at its first rotation).
   */
  rotateSession(
    appId: string,
    tokenHash: string,
    next: { tokenHash: string; expiresAtMs: number; chain?: string },
    nowMs: number,
  ): Promise<Session | null>;
  /**
   * The live session `rotateSession` last moved away from this token hash, or null: what a
   * refresh token presented again after its rotation was rotated into. A read by an index, as it
   * answers every made-up token a refresh or a revoke is sent.
   */
  findSessionRotatedFrom(appId: string, tokenHash: string, nowMs: number): Promise<Session | null>;
  /**
   * The live session of this chain, or null: what any token of a rotating session, presented
   * after a rotation replaced it, led to. A read by an index, as `findSessionRotatedFrom`.
   */
  findSessionOfChain(appId: string, chain: string, nowMs: number): Promise<Session | null>;
}

export interface DevInboxMessage {
  id: string;
  appId: string;
  channel: Channel;
  to: string;
  subject: string;
  text: string;
  code: string;
  createdAtMs: number;
}

/** Dev mode's inbox: the one place a plaintext code may rest (DESIGN.md). */
export interface DevInbox {
  add(message: DevInboxMessage): Promise<void>;
  /** newest first */
  list(to: string, limit: number): Promise<DevInboxMessage[]>;
}

/** A message rendered from its template, ready for a provider. */
export interface RenderedMessage {
  /** the outbox message id; providers that support idempotency keys receive it */
  messageId: string;
  appId: string;
  verificationId: string;
  channel: Channel;
  to: string;
  country?: string;
  purpose: Purpose;
  locale: string;
  subject: string;
  text: string;
  html?: string;
  /** plaintext code: only the dev sender may keep or print it */
  code: string;
  /** the whole minutes the code has left that the text states (`{minutes}`), for vendor templates */
  minutes?: number;
}

export interface SendReceipt {
  providerMessageId?: string;
}

/**
 * A send that did not end in the provider's acceptance. `permanent` ones (invalid number, blocked
 * recipient) are never retried. `unconfirmed` ones are neither sent nor refused for sure: the
 * provider had the whole message and no answer came (a timeout, or the connection closed after
 * the request was written), so it may have gone out. Those are not retried either, since a retry
 * that was not needed sends the code twice; the other failures were clearly not sent.
 */
export class SendFailure extends Error {
  readonly permanent: boolean;
  readonly unconfirmed: boolean;
  constructor(
    message: string,
    options: { permanent?: boolean; unconfirmed?: boolean; cause?: unknown } = {},
  ) {
    super(message, { cause: options.cause });
    this.name = "SendFailure";
    this.permanent = options.permanent ?? false;
    this.unconfirmed = !this.permanent && (options.unconfirmed ?? false);
  }
}

/** One delivery provider of one channel. Like kratos `courier/channel.go` (`ID()`, `Dispatch()`). */
export interface MessageSender {
  readonly id: string;
  readonly channel: Channel;
  /**
   * True for a sender that holds messages in a queue of its own until one of its few connections
   * is free (an SMTP pool): it calls `handOver` as a message leaves that queue for the provider.
   */
  readonly queuesMessages?: true;
  /** Resolves when the provider accepted the message; throws `SendFailure` otherwise. */
  send(message: RenderedMessage, handOver?: HandOver): Promise<SendReceipt>;
  close?(): Promise<void>;
}

/**
 * Called by a queueing sender as a message leaves its queue for the provider. Time spent in the
 * queue is not the provider being slow, and a message its caller gave up on there must never go
 * out later: so the caller starts the try's clock here, or answers false when the message may no
 * longer be sent (the outbox worker: its claim would lapse before the try could end); the sender
 * then drops it unsent and fails the send.
 */
export type HandOver = () => boolean;

export type CaptchaKind = "image" | "slider";

/** A challenge as stored: the answer only as a keyed hash (plaintext `devAnswer` in dev mode only). */
export interface StoredChallenge {
  token: string;
  appId: string;
  kind: CaptchaKind;
  answerHash: string;
  /** a per-challenge key the client encrypts its answer with (AJ-Captcha's `secretKey`); not secret */
  clientKey?: string;
  /** answer tries left, after the one being taken */
  triesLeft: number;
  expiresAtMs: number;
  devAnswer?: string;
}

export interface CaptchaPass {
  tokenHash: string;
  appId: string;
  /** the recipient the captcha was solved for; a pass bound to one recipient serves no other */
  boundTo?: string;
  expiresAtMs: number;
}

/** Captcha challenges and pass tokens; both are single use. */
export interface CaptchaStore {
  saveChallenge(challenge: StoredChallenge): Promise<void>;
  /**
   * Takes one answer try *before* the answer is compared (like code attempts): returns the
   * challenge with `triesLeft` already decremented, or null when it is unknown, expired or out of
   * tries. The try is spent even if the caller then finds the answer right.
   */
  takeTry(appId: string, token: string, nowMs: number): Promise<StoredChallenge | null>;
  /** Deletes a solved challenge; true for exactly one caller. */
  consumeChallenge(appId: string, token: string): Promise<boolean>;
  /** dev API only: the challenge even if spent, for its `devAnswer` */
  peekChallenge(token: string, nowMs: number): Promise<StoredChallenge | null>;
  savePass(pass: CaptchaPass): Promise<void>;
  /** Deletes and returns a live pass; a pass is returned to exactly one caller. */
  consumePass(appId: string, tokenHash: string, nowMs: number): Promise<CaptchaPass | null>;
}

export interface ImageChallengeData {
  answer: string;
  imageDataUri: string;
}

export interface SliderChallengeData {
  x: number;
  y: number;
  backgroundPngBase64: string;
  piecePngBase64: string;
  width: number;
  height: number;
}

/** Renders challenges and reads slider answers (src/captcha implements it). */
export interface CaptchaGenerator {
  /**
   * Why a draw now would be refused, asked before anything of it is counted: "busy" (more renders
   * waiting than the renderer takes), "down" (it failed and is starting again); null if it draws.
   * A renderer on the calling thread never refuses.
   */
  refusal?(): "busy" | "down" | null;
  /** a new challenge; rejects if the renderer fails (the draw is then given back and refused) */
  image(): Promise<ImageChallengeData>;
  slider(): Promise<SliderChallengeData>;
  normalizeImageAnswer(input: string): string;
  /** a slider answer as "237", {"x":237,...} JSON, or AJ-Captcha AES-encrypted JSON; null if malformed */
  parseSliderX(input: string, clientKey: string | null): number | null;
  /** a fresh per-challenge client key */
  clientKey(): string;
  readonly sliderTolerancePx: number;
}

/** A third-party captcha widget's server-side check (Turnstile, hCaptcha, reCAPTCHA); never throws. */
export interface ExternalCaptchaVerifier {
  readonly id: string;
  verify(token: string, remoteIp?: string): Promise<{ ok: boolean; reason?: string }>;
}

export type SendDecision =
  | "accepted"
  | "rate_limited"
  | "captcha_required"
  | "denied"
  | "captcha_failed"
  /** refused by an account rule (no such account, or one exists): it told whether one exists */
  | "account_refused";

/** One send decision, for abuse analysis and the admin console (masked recipient, never a code). */
export interface SendLogEntry {
  atMs: number;
  appId: string;
  face: string;
  /** absent for a refusal decided before the body was read (a captcha demanded of a risky IP) */
  channel?: Channel;
  /** masked; absent as `channel` */
  to?: string;
  country?: string;
  ip?: string;
  deviceId?: string;
  purpose?: Purpose;
  decision: SendDecision;
  /** the rule or reason behind the decision */
  reason?: string;
  /** rules that would have refused in shadow mode */
  shadowed?: string[];
  verificationId?: string;
  /**
   * How many identical decisions this entry stands for, absent meaning one: adapters merge a
   * client's repeated refusals within one write batch (those about the client itself whatever
   * their recipient; see storage/send-log-buffer.ts); accepted sends are never merged.
   */
  count?: number;
}

/**
 * The send log. `record` never blocks nor fails the request: adapters buffer and write in
 * batches (DESIGN.md: the send log may be written asynchronously).
 */
export interface SendLog {
  record(entry: SendLogEntry): void;
  query(filter: {
    appId: string;
    sinceMs?: number;
    decision?: SendDecision;
    limit: number;
  }): Promise<SendLogEntry[]>;
  /** writes what is buffered */
  flush(): Promise<void>;
}
