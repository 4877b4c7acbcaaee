import {
  clientAddressOf,
  destinationRefusal,
  isKnownNumber,
  isSafeListed,
  KNOWN_NUMBER_NOTE,
  numberPrefix,
  pumpingCounters,
  pumpingDenied,
  riskCounters,
  waivableForKnownNumber,
  waiveForKnownNumber,
} from "../abuse/abuse-rules.js";
import { applyAccountRule } from "../accounts/account-rules.js";
import { OtpError } from "../errors.js";
import { newTimeOrderedId, newVerificationId, sha256Hex } from "../ids.js";
import { countryLocale } from "../messages/country-locale.js";
import { findTemplate, resolveLocale } from "../messages/templates.js";
import { ruleName } from "../policy.js";
import type { CounterCheck, IssueRequest, ReplayOutcome, SendDecision, SendLogEntry } from "../ports.js";
import { mailboxOf, maskAddress, parseRecipient, phonePrefix } from "../recipients.js";
import { generateNumericCode, outboxSealContext } from "../secrets.js";
import type {
  AccountRule,
  App,
  CaptchaMode,
  Channel,
  CodeRecord,
  Face,
  OutboxMessage,
  Purpose,
  RateRule,
  Recipient,
} from "../types.js";
import type { EngineDeps } from "./engine-deps.js";
import { appCounterKey, failedChecksKey, ipCounterKey, recipientCounterKey, Slot } from "./keys.js";

/** A retried send (same Idempotency-Key) gets the first answer for 24 h (DESIGN.md). */
const IDEMPOTENCY_TTL_SECONDS = 24 * 3600;

export interface SendCodeInput {
  app: App;
  channel: Channel;
  /** raw recipient; absent only for the `own_contact` rule */
  to: string | undefined;
  /** ISO 3166 alpha-2 region of a national phone number */
  country?: string | undefined;
  purpose: Purpose;
  rule: AccountRule;
  /** purposes the approval token redeems for; default: the code's own purpose */
  tokenPurposes?: Purpose[];
  locale?: string | undefined;
  /** the logged-in account, for the logged-in rules */
  accountId?: string | undefined;
  clientIp?: string | undefined;
  /** device fingerprint, where the face provides one */
  deviceId?: string | undefined;
  /** the API face asking: picks the app's captcha mode (default native) */
  face?: Face;
  /**
   * Recipient limits a face's published contract promises on top of the app's own rules (Fresns:
   * 1 per minute, 5 per 10 minutes), counted under their own keys.
   */
  contractRules?: RateRule[] | undefined;
  /** a captcha pass token the caller presents (spent on use) */
  captchaToken?: string | undefined;
  /**
   * Under risk-based captchas, a pass that cannot be redeemed counts only when a captcha is
   * needed: for a face whose SDK sends the pass it cached with every call for the pass's lifetime
   * (CloudBase), so that a spent one is not a refusal. Elsewhere it is refused, and recorded.
   */
  passMayBeStale?: boolean | undefined;
  idempotencyKey?: string | undefined;
  /** which input field `to` came from, so errors name the caller's field */
  toField?: string;
}

export interface SendCodeResult {
  record: CodeRecord;
  recipient: Recipient;
  maskedTo: string;
  expiresInSeconds: number;
  resendAfterSeconds: number;
  /** set when the account rule looked the recipient up */
  accountExists: boolean | undefined;
  /** true when an earlier answer was replayed for the same Idempotency-Key */
  replayed: boolean;
}

/**
 * Issues a code: account rule -> abuse defence (SMS-pumping guard, captcha) -> rate rules + code +
 * outbox row in one atomic store operation. No provider is called here; the outbox worker delivers
 * once the row is durable (DESIGN.md). Every decision goes to the send log.
 */
export function sendCode(deps: EngineDeps, input: SendCodeInput): Promise<SendCodeResult> {
  const { idempotencyKey } = input;
  if (idempotencyKey === undefined) return issueCode(deps, input);
  return issueCode(deps, input).catch(async (error: unknown) => {
    // The retry of a send that went through gets the first answer for a day, though a rule
    // checked before the store is asked would refuse it now: above all the account rule, once
    // the account the code was for has been made. (A store that is down is not asked again.)
    if (!(error instanceof OtpError) || error.code === "STORE_UNAVAILABLE") throw error;
    const first = await deps.store.replay(input.app.id, idempotencyKey, deps.clock.nowMs());
    if (first === null) throw error;
    return replayedAnswer(deps, input, first);
  });
}

/**
 * The answer to a retry under an Idempotency-Key its first send's answer is stored for. `parsed`:
 * the request's `to` as parsed already, if it has one; `recipientAddress`: where this request
 * sends, once known (an own-contact send's is the account's contact, known after its rule).
 * Another request under the key is refused first, even while the first send is being committed:
 * waiting would not make it the same request, so "try again shortly" would only delay the 400.
 */
function replayedAnswer(
  deps: EngineDeps,
  input: SendCodeInput,
  first: ReplayOutcome,
  parsed = parsedTo(deps, input),
  recipientAddress = parsed?.address,
): SendCodeResult {
  // Earlier builds' entries (an entry lives a day): those that stored channel, recipient and
  // purpose only are matched by where this request sends, never by where the first one did (an
  // own-contact send refused before its account was read is not matched: it could be another
  // account's); later ones also fingerprinted the locale.
  const legacy =
    recipientAddress !== undefined && sha256Hex(`${input.channel}\0${recipientAddress}\0${input.purpose}`);
  if (
    first.fingerprint !== requestFingerprint(input, parsed) &&
    first.fingerprint !== requestFingerprint(input, parsed, input.locale ?? "") &&
    first.fingerprint !== legacy
  ) {
    throw new OtpError("VALIDATION_FAILED", {
      message: "Idempotency-Key was already used for a different request",
      details: { field: "Idempotency-Key" },
    });
  }
  if (first.kind === "in_progress") {
    throw new OtpError("STORE_UNAVAILABLE", {
      message: "The first request with this Idempotency-Key is still being committed; try again shortly",
      details: { retryAfterSeconds: 1 },
    });
  }
  const recipient = parseRecipient(first.record.channel, first.record.to, {
    defaultCountry: deps.defaultCountry,
  });
  return result(first.record, recipient, first.resendAfterSeconds, undefined, true);
}

async function issueCode(deps: EngineDeps, input: SendCodeInput): Promise<SendCodeResult> {
  const { app, channel, purpose } = input;
  const face = input.face ?? "native";
  if (app.disabled) throw new OtpError("APP_DISABLED");
  if (!deps.channelEnabled(channel)) {
    throw new OtpError("CHANNEL_DISABLED", {
      message: `No ${channel} provider is configured`,
      details: { field: "channel" },
    });
  }
  const parseOptions = toParseOptions(deps, input);
  const parsed = parsedTo(deps, input, parseOptions);
  // The account rule runs before the rate rules so its refusal is the answer a client sees first
  // (Fresns's order); it counts nothing.
  let ruled: Awaited<ReturnType<typeof applyAccountRule>>;
  try {
    ruled = await applyAccountRule(deps.accounts, {
      appId: app.id,
      rule: input.rule,
      channel,
      recipient: parsed,
      accountId: input.accountId,
    });
  } catch (error) {
    if (parsed !== undefined && isExistenceRefusal(error)) {
      await requirePassToTellExistence(deps, input, parsed);
      await countExistenceProbe(deps, input, parsed, error);
    }
    throw error;
  }
  // An account's own phone is stored as E.164 only; parse it again for its country.
  const recipient =
    channel === "sms" && ruled.recipient.country === undefined
      ? parseRecipient(channel, ruled.recipient.address, parseOptions)
      : ruled.recipient;
  const { accountExists } = ruled;

  // Explicit locale or the face's language header (both arrive as `locale`), then the phone
  // number's region (+86 -> zh-Hans), then the app default.
  const fallbackLocale = countryLocale(recipient.country, app.templates, purpose) ?? app.defaultLocale;
  // Resolved among the locales with a template of this purpose: one the app has templates in for
  // other purposes only is matched by language or falls back, as an unknown one is.
  const candidates = [
    resolveLocale(input.locale, app.templates, fallbackLocale, purpose),
    fallbackLocale,
    app.defaultLocale,
  ];
  const locale = candidates.find((candidate) => findTemplate(app.templates, purpose, candidate) !== null);
  if (locale === undefined) {
    throw new OtpError("TEMPLATE_MISSING", {
      internal: `no template for ${purpose} in ${[...new Set(candidates)].join(", ")} in app ${app.id}`,
    });
  }

  const now = deps.clock.nowMs();
  const log = decisionLog(deps, input, recipient, now);

  const policy = app.policy;
  const testCode = fixedTestCode(app, recipient, deps.defaultCountry);
  // Marks a pass spent by a send under an Idempotency-Key, for as long as the store keeps that
  // send's answer: set once the pass is redeemed, before the store is asked, so a retry that comes
  // while the first send is still being committed is a retry too (the store answers it in_progress
  // or replays); taken back with the pass when the send issues nothing.
  const passReplayKey =
    input.captchaToken !== undefined && input.idempotencyKey !== undefined
      ? `captcha:replay:${sha256Hex(`${input.idempotencyKey}\0${input.captchaToken}`)}`
      : undefined;
  let captchaSolved = false;
  // Set when the pass was spent by this key's first attempt: then only that attempt's answer may
  // be given again, never a new code (the refusal to give when there is none to replay).
  let spentPassRefusal: OtpError | undefined;
  // A stale pass's refusal, answered only if the risk rules then ask for a captcha (passMayBeStale).
  let stalePassRefusal: OtpError | undefined;
  // Gives the redeemed pass back when no code is issued after all (see CaptchaService.redeemPass).
  let returnPass = async () => {};
  const givePassBack = () =>
    returnPass().catch((error: unknown) => {
      // The caller still gets the answer it earned; the pass is lost, as before this was possible.
      deps.logger.warn({ err: error }, "could not give a captcha pass back after a refused send");
    });
  const counters: CounterCheck[] = [];
  const shadowNotes: string[] = [];
  let pumpingPrefix: string | undefined;
  // Test recipients (app-store review, end-to-end tests) are never delivered, so they skip every
  // limit and defence.
  if (testCode === null) {
    const pumping = app.abuse.pumping;
    if (channel === "sms" && !isSafeListed(pumping, recipient.address)) {
      const refusal = destinationRefusal(pumping, recipient);
      if (refusal && !pumping.shadow) {
        log("denied", { reason: refusal });
        throw pumpingDenied(refusal);
      }
      if (refusal) shadowNotes.push(refusal);
      pumpingPrefix =
        recipient.callingCode === undefined
          ? phonePrefix(recipient.address, pumping.prefixDigits)
          : numberPrefix(recipient.address, recipient.callingCode.length, pumping.prefixDigits);
      if (pumpingPrefix) counters.push(...pumpingCounters(pumping, recipient, pumpingPrefix));
    }
    const captchaMode = app.abuse.captcha[face];
    if (input.captchaToken !== undefined && captchaMode !== "never") {
      try {
        const giveBack = await deps.captcha.redeemPass(
          app,
          input.captchaToken,
          recipient.address,
          input.clientIp,
        );
        returnPass = giveBack;
        if (passReplayKey !== undefined) {
          const mark = await deps.counters.hit(app.id, passReplayKey, IDEMPOTENCY_TTL_SECONDS, now);
          returnPass = async () => {
            await deps.counters.refund(app.id, passReplayKey, mark.resetAtMs);
            await giveBack();
          };
        }
      } catch (error) {
        // A retry of a send that went through presents the pass its first attempt spent: it goes
        // on to the store, which replays the first answer.
        const retried =
          passReplayKey !== undefined && (await deps.counters.peek(app.id, passReplayKey, now)).count > 0;
        if (retried) spentPassRefusal = error instanceof OtpError ? error : new OtpError("CAPTCHA_FAILED");
        else {
          const mayBeStale = input.passMayBeStale && captchaMode === "risk" && error instanceof OtpError;
          if (!mayBeStale) {
            // The vendor's own words when a third-party captcha refused (`internal`): the send log
            // then tells a vendor outage from a bad token.
            log("captcha_failed", {
              reason: error instanceof OtpError ? (error.internal ?? error.message) : "captcha",
            });
            throw error;
          }
          stalePassRefusal = error;
        }
      }
      captchaSolved = stalePassRefusal === undefined;
    }
    if (captchaMode === "always" && !captchaSolved) {
      log("captcha_required", { reason: "captcha_always" });
      throw new OtpError("CAPTCHA_REQUIRED", { details: { rule: "captcha_always" } });
    }
    if (captchaMode === "risk") {
      counters.push(...riskCounters(app, { ip: input.clientIp, deviceId: input.deviceId }, captchaSolved));
    }
    const mailbox = mailboxOf(channel, recipient.address);
    counters.push(...rateCounters(app, recipient.channel, mailbox, input.clientIp));
    // A recipient out of failed checks can check no code until that window ends: a code sent now
    // could not be used, so the send is refused rather than delivered (and paid for). Only read,
    // never counted by a send.
    const failures = policy.failedChecksPerRecipient;
    counters.push({
      key: failedChecksKey(channel, recipient.address),
      limit: failures.limit - 1,
      windowSeconds: failures.windowSeconds,
      increment: 0,
      rule: ruleName("recipient_failed_checks", failures),
    });
    for (const rule of input.contractRules ?? []) {
      counters.push({
        key: `${face}:${recipientCounterKey(channel, mailbox, rule.windowSeconds)}`,
        ...rule,
        rule: ruleName("recipient", rule),
      });
    }
  }

  // The code, its hash and its sealed copy are made only when a store asks for them: the
  // embedded store refuses over-limit requests first, so a refusal under attack costs no crypto.
  // The slot's tags are a keyed hash each: made lazily too (`Slot`), for the same reason.
  const slot = new Slot(app.id, channel, recipient.address, purpose, deps.secrets);
  let prepared: { record: CodeRecord; outbox: OutboxMessage | null } | undefined;
  const prepare = () => {
    if (prepared) return prepared;
    const code = testCode ?? generateNumericCode(policy.codeLength);
    // Tagged with the slot under the newest secret, so a store can find the code by id where it
    // keeps the slot's code.
    const id = newVerificationId(slot.slotTags[0]!, now);
    const record: CodeRecord = {
      id,
      appId: app.id,
      channel,
      to: recipient.address,
      purpose,
      tokenPurposes: input.tokenPurposes ?? [purpose],
      codeHash: deps.secrets.hashCode(id, code),
      status: "pending",
      attempts: 0,
      maxAttempts: policy.maxAttempts,
      createdAtMs: now,
      expiresAtMs: now + policy.codeTtlSeconds * 1000,
      locale,
      ...(input.accountId ? { accountId: input.accountId } : {}),
    };
    const outbox: OutboxMessage | null =
      testCode === null
        ? {
            id: newTimeOrderedId("msg", now),
            appId: app.id,
            verificationId: id,
            channel,
            to: recipient.address,
            purpose,
            locale,
            sealedCode: deps.secrets.seal(
              code,
              outboxSealContext({
                appId: app.id,
                verificationId: id,
                channel,
                to: recipient.address,
                purpose,
              }),
            ),
            createdAtMs: now,
            deliverBeforeMs: record.expiresAtMs,
            attempts: 0,
          }
        : null;
    prepared = { record, outbox };
    return prepared;
  };
  const request = new LazyIssueRequest(app.id, counters, slot, prepare);
  if (input.idempotencyKey) {
    request.idempotency = {
      key: input.idempotencyKey,
      fingerprint: requestFingerprint(input, parsed),
      ...(spentPassRefusal ? { replayOnly: true } : {}),
    };
  }

  let outcome: Awaited<ReturnType<typeof deps.store.issue>>;
  try {
    outcome = await deps.store.issue(request, now);
    // A prefix's block or budget, or a country's budget, is shared by everyone who sends there, so
    // an attacker's sends to new numbers can use it up: a number whose code was approved before
    // is let past it (its send still counted), held to budgets of known numbers of their own; new
    // numbers stay refused. Only a send those rules
    // refused pays for this (one read, one more issue). A refusal wrote nothing in the store (it
    // checks every rule before it counts any, or replays), so the same request is issued again:
    // the same code, the same Idempotency-Key.
    if (
      outcome.kind === "refused" &&
      outcome.refusal === "deny" &&
      pumpingPrefix !== undefined &&
      waivableForKnownNumber(counters, outcome.rule) &&
      (await isKnownNumber(deps.counters, app.id, recipient.address, now))
    ) {
      waiveForKnownNumber(counters, app.abuse.pumping, recipient, pumpingPrefix);
      shadowNotes.push(KNOWN_NUMBER_NOTE);
      outcome = await deps.store.issue(request, now);
    }
  } catch (error) {
    await givePassBack();
    throw error;
  }
  if (outcome.kind === "refused") {
    await givePassBack();
    const details = { retryAfterSeconds: outcome.retryAfterSeconds, rule: outcome.rule };
    if (outcome.refusal === "deny") {
      log("denied", { reason: outcome.rule });
      throw new OtpError("PUMPING_DENIED", { details });
    }
    if (outcome.refusal === "captcha" && stalePassRefusal) {
      log("captcha_failed", { reason: stalePassRefusal.message });
      throw stalePassRefusal;
    }
    if (outcome.refusal === "captcha") {
      log("captcha_required", { reason: outcome.rule });
      throw new OtpError("CAPTCHA_REQUIRED", { details });
    }
    log("rate_limited", { reason: outcome.rule });
    throw new OtpError(outcome.rule.startsWith("recipient:") ? "RESEND_TOO_SOON" : "RATE_LIMITED", {
      details,
    });
  }
  if (outcome.kind === "not_replayed") {
    // The first send's answer is gone (its code outlived), and the spent pass cannot buy another.
    const refusal = spentPassRefusal ?? new OtpError("CAPTCHA_FAILED");
    log("captcha_failed", { reason: refusal.message });
    throw refusal;
  }
  if (outcome.kind === "in_progress" || outcome.kind === "replayed") {
    await givePassBack(); // the first send's answer again: this pass issued nothing
    const replayed = replayedAnswer(deps, input, outcome, parsed, recipient.address);
    return { ...replayed, recipient, accountExists };
  }
  const shadowed = [...shadowNotes, ...outcome.shadowed];
  const { record, outbox } = prepare();
  log("accepted", { verificationId: record.id, ...(shadowed.length > 0 ? { shadowed } : {}) });
  if (outbox) deps.onQueued();
  if (pumpingPrefix) deps.watchPrefix(app, pumpingPrefix);
  return result(record, recipient, outcome.resendAfterSeconds, accountExists, false);
}

function result(
  record: CodeRecord,
  recipient: Recipient,
  resendAfterSeconds: number,
  accountExists: boolean | undefined,
  replayed: boolean,
): SendCodeResult {
  return {
    record,
    recipient,
    maskedTo: maskAddress(record.channel, record.to),
    expiresInSeconds: Math.round((record.expiresAtMs - record.createdAtMs) / 1000),
    resendAfterSeconds,
    accountExists,
    replayed,
  };
}

/**
 * The store's view of a send; the slot's tags and the code are made when the store first reads
 * them (see `prepare` in `sendCode`).
 *
 * A class, not an object literal with getters: such a literal's getters are closures over the
 * whole call, made anew on every call, and under a flood of refusals that kept each call's state
 * alive through two young-generation collections into the old one (~0.4 MB promoted per scavenge
 * at ~12k refusals/s; 0.05 MB with this class, and scavenges of 1.4 instead of 2.0-3.4 ms). Getters
 * on a prototype are made once.
 */
class LazyIssueRequest implements IssueRequest {
  idempotency?: { key: string; fingerprint: string };
  readonly slotKey: string;
  readonly formerSlotKey: string | undefined;

  constructor(
    readonly appId: string,
    readonly counters: CounterCheck[],
    private readonly slot: Slot,
    private readonly makeCode: () => { record: CodeRecord; outbox: OutboxMessage | null },
  ) {
    this.slotKey = slot.slotKey;
    this.formerSlotKey = slot.formerSlotKey;
  }

  get slotTags(): string[] {
    return this.slot.slotTags;
  }

  get code(): CodeRecord {
    return this.makeCode().record;
  }

  get outbox(): OutboxMessage | null {
    return this.makeCode().outbox;
  }
}

/** Every rate rule of one send; the store checks them all before counting any. */
function rateCounters(
  app: App,
  channel: Channel,
  mailbox: string,
  clientIp: string | undefined,
): CounterCheck[] {
  const { policy } = app;
  const counters: CounterCheck[] = policy.perRecipient.map((rule) => ({
    key: recipientCounterKey(channel, mailbox, rule.windowSeconds),
    ...rule,
    rule: ruleName("recipient", rule),
  }));
  if (clientIp) {
    for (const rule of policy.perIp) {
      counters.push({
        key: ipCounterKey(clientAddressOf(clientIp), rule.windowSeconds),
        ...rule,
        rule: ruleName("ip", rule),
      });
    }
  }
  for (const rule of policy.perApp) {
    counters.push({ key: appCounterKey(rule.windowSeconds), ...rule, rule: ruleName("app", rule) });
  }
  return counters;
}

// Test recipients are parsed once per app object (apps are cached and replaced when they change),
// not on every send.
const testCodesByApp = new WeakMap<App, Map<string, string>>();

/** An account rule's refusal that says whether an account exists for the recipient. */
function isExistenceRefusal(error: unknown): error is OtpError {
  return error instanceof OtpError && (error.code === "ACCOUNT_EXISTS" || error.code === "ACCOUNT_NOT_FOUND");
}

/**
 * Where the face demands a solved captcha before any send (IDaaS), whether an account exists is
 * told only to a caller whose pass is good for this recipient: else anyone could look accounts up
 * there, without a captcha and without limit. Throws the captcha's refusal otherwise. The pass is
 * given back, as after a rate limit's refusal, so the person who mistook the scene need not solve
 * another; but bound to this recipient, so that one pass cannot ask about account after account.
 */
async function requirePassToTellExistence(
  deps: EngineDeps,
  input: SendCodeInput,
  recipient: Recipient,
): Promise<void> {
  const { app } = input;
  if (app.abuse.captcha[input.face ?? "native"] !== "always") return;
  if (fixedTestCode(app, recipient, deps.defaultCountry) !== null) return;
  if (input.captchaToken === undefined) {
    throw new OtpError("CAPTCHA_REQUIRED", { details: { rule: "captcha_always" } });
  }
  await spendPassToTell(deps, input, recipient, input.captchaToken);
}

/**
 * Spends the caller's pass for telling whether `recipient` has an account, and gives it back bound
 * to this recipient: one solved captcha may not look up one account after another.
 */
async function spendPassToTell(
  deps: EngineDeps,
  input: SendCodeInput,
  recipient: Recipient,
  captchaToken: string,
): Promise<void> {
  const giveBack = await deps.captcha.redeemPass(input.app, captchaToken, recipient.address, input.clientIp);
  await giveBack(true);
}

/** The send log's writer for one send's decisions (the recipient masked, never a code). */
function decisionLog(deps: EngineDeps, input: SendCodeInput, recipient: Recipient, now: number) {
  const { app, purpose } = input;
  const face = input.face ?? "native";
  return (decision: SendDecision, extra: Partial<SendLogEntry> = {}) =>
    deps.sendLog.record({
      atMs: now,
      appId: app.id,
      face,
      channel: recipient.channel,
      to: maskAddress(recipient.channel, recipient.address),
      ...(recipient.country ? { country: recipient.country } : {}),
      ...(input.clientIp ? { ip: input.clientIp } : {}),
      ...(input.deviceId ? { deviceId: input.deviceId } : {}),
      purpose,
      decision,
      ...extra,
    });
}

// Look-ups a face that never asks for a captcha allows one client (an IPv6 one by its /64) in a
// window: room for everyone behind one address (an office, a carrier's NAT) to mistype, too little
// to walk a list of addresses. Counted apart from the risk rules, which are a send's.
const LOOKUPS_PER_CLIENT = { limit: 20, windowSeconds: 600 };

/**
 * An account rule's refusal tells whether an account exists, so the abuse rules see it: it is
 * logged, and counted. Where the face escalates by risk it counts on the client's risk rules as a
 * send would, and past the threshold a captcha is asked for (a pass good for this recipient gets
 * the answer, bound to it as in `requirePassToTellExistence`). Where the face never asks for one
 * (Fresns by default), it counts on a look-up rule of its own per client address, and past it the
 * refusal is rate-limited. Throws that refusal, or returns for the caller to throw the account
 * rule's. ("always" faces are handled by `requirePassToTellExistence`.)
 */
async function countExistenceProbe(
  deps: EngineDeps,
  input: SendCodeInput,
  recipient: Recipient,
  refusal: OtpError,
  mode: CaptchaMode = input.app.abuse.captcha[input.face ?? "native"],
): Promise<void> {
  const { app } = input;
  if (fixedTestCode(app, recipient, deps.defaultCountry) !== null) return;
  const now = deps.clock.nowMs();
  const log = decisionLog(deps, input, recipient, now);
  const trippedBy = async (rules: { key: string; limit: number; windowSeconds: number; rule: string }[]) => {
    let tripped: { rule: string; retryAfterSeconds: number } | undefined;
    for (const counter of rules) {
      const state = await deps.counters.hit(app.id, counter.key, counter.windowSeconds, now);
      if (state.count > counter.limit && tripped === undefined) {
        tripped = {
          rule: counter.rule,
          retryAfterSeconds: Math.max(1, Math.ceil((state.resetAtMs - now) / 1000)),
        };
      }
    }
    return tripped;
  };
  if (mode === "never" && input.clientIp !== undefined) {
    const { windowSeconds } = LOOKUPS_PER_CLIENT;
    const tripped = await trippedBy([
      {
        key: `lookups:${clientAddressOf(input.clientIp)}:${windowSeconds}`,
        ...LOOKUPS_PER_CLIENT,
        rule: ruleName("lookups_ip", LOOKUPS_PER_CLIENT),
      },
    ]);
    if (tripped) {
      log("rate_limited", { reason: tripped.rule });
      throw new OtpError("RATE_LIMITED", { details: tripped });
    }
  }
  if (mode === "risk") {
    const tripped = await trippedBy(
      riskCounters(app, { ip: input.clientIp, deviceId: input.deviceId }, false),
    );
    if (tripped) {
      if (input.captchaToken === undefined) {
        log("captcha_required", { reason: tripped.rule });
        throw new OtpError("CAPTCHA_REQUIRED", { details: tripped });
      }
      await spendPassToTell(deps, input, recipient, input.captchaToken);
    }
  }
  log("account_refused", { reason: refusal.code.toLowerCase() });
}

/** A look-up outside a send: what `countAccountLookup` counts. */
export interface AccountLookupInput {
  app: App;
  face: Face;
  channel: Channel;
  /** the contact looked up, as the face normalised it (an email address, an E.164 number) */
  address: string;
  /** the purpose the send log files it under */
  purpose: Purpose;
  clientIp?: string | undefined;
  deviceId?: string | undefined;
}

/**
 * Counts an answer outside a send that tells whether an account exists (a Fresns login answers an
 * unknown account 31502, as its API says, and a known one's wrong password 34304) and logs it as an
 * account rule's refusal of a send is, on the look-up rule per client address whatever the face's
 * captcha mode: on the risk rules, a person's wrong passwords would make the face ask a captcha of
 * their next send (the password reset they now need), and Fresns has no captcha step. Past the
 * rule it throws RATE_LIMITED, which the caller answers whether or not the account exists; else it
 * returns, for the caller to give its own answer. `refusal`: what that answer would say
 * (ACCOUNT_NOT_FOUND, or the account's own refusal).
 */
export function countAccountLookup(deps: EngineDeps, lookup: AccountLookupInput, refusal: OtpError) {
  const recipient = parseRecipient(lookup.channel, lookup.address, { defaultCountry: deps.defaultCountry });
  const input: SendCodeInput = { ...lookup, to: lookup.address, rule: "any" };
  return countExistenceProbe(deps, input, recipient, refusal, "never");
}

/**
 * A test recipient's fixed code, matched whatever the letter case of the address: a reviewer whose
 * keyboard capitalises `Review@` reaches the same inbox, and must get the fixed code rather than a
 * real one sent where nobody reads it. Not by mailbox (tags, Gmail's dots): a test address listed
 * as `dev+review@` must not take the fixed code to `dev@`, whose owner reads real ones.
 */
function fixedTestCode(app: App, recipient: Recipient, defaultCountry: string): string | null {
  if (app.testRecipients.length === 0) return null;
  let codes = testCodesByApp.get(app);
  if (!codes) {
    codes = new Map();
    for (const test of app.testRecipients) {
      for (const channel of ["email", "sms"] as const) {
        try {
          const { address } = parseRecipient(channel, test.to, { defaultCountry });
          codes.set(`${channel}\0${address.toLowerCase()}`, test.code);
        } catch {
          // a test recipient of the other channel does not parse as this one; it cannot match
        }
      }
    }
    testCodesByApp.set(app, codes);
  }
  return codes.get(`${recipient.channel}\0${recipient.address.toLowerCase()}`) ?? null;
}

/**
 * What makes two sends under one Idempotency-Key the same request: the fields that decide where a
 * code goes and what it proves. The client's address and device are context, and so is the
 * message's language: a retry from another worker may send another Accept-Language, and the
 * first message is out in its own. `to`: the request's `to`, parsed. `locale`: only to match the
 * entries of builds that fingerprinted it.
 */
function requestFingerprint(input: SendCodeInput, to: Recipient | undefined, locale?: string): string {
  const fields = [
    input.channel,
    to?.address ?? "",
    input.purpose,
    input.rule,
    input.accountId ?? "",
    ...(locale === undefined ? [] : [locale]),
    input.tokenPurposes?.join(",") ?? "",
  ];
  return sha256Hex(fields.join("\0"));
}

/** How a send's `to` (and an account's own phone) is parsed: its country, else the default. */
function toParseOptions(deps: EngineDeps, input: SendCodeInput) {
  return { country: input.country, defaultCountry: deps.defaultCountry, field: input.toField ?? "to" };
}

function parsedTo(
  deps: EngineDeps,
  input: SendCodeInput,
  options = toParseOptions(deps, input),
): Recipient | undefined {
  return input.to === undefined ? undefined : parseRecipient(input.channel, input.to, options);
}
