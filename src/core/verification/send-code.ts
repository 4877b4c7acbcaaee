import { applyAccountRule } from "../accounts/account-rules.js";
import { OtpError } from "../errors.js";
import { newId, sha256Hex } from "../ids.js";
import { findTemplate, resolveLocale } from "../messages/templates.js";
import { ruleName } from "../policy.js";
import type { CounterCheck, IssueRequest } from "../ports.js";
import { maskAddress, parseRecipient } from "../recipients.js";
import { generateNumericCode } from "../secrets.js";
import type { AccountRule, App, Channel, CodeRecord, Purpose, Recipient } from "../types.js";
import type { EngineDeps } from "./engine-deps.js";
import { appCounterKey, ipCounterKey, recipientCounterKey, slotKey } from "./keys.js";

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
 * Issues a code: account rule -> rate rules + code + outbox row in one atomic store operation.
 * No provider is called here; the outbox worker delivers once the row is durable (DESIGN.md).
 */
export async function sendCode(deps: EngineDeps, input: SendCodeInput): Promise<SendCodeResult> {
  const { app, channel, purpose } = input;
  if (app.disabled) throw new OtpError("APP_DISABLED");
  if (!deps.channelEnabled(channel)) {
    throw new OtpError("CHANNEL_DISABLED", {
      message: `No ${channel} provider is configured`,
      details: { field: "channel" },
    });
  }
  const parsed =
    input.to === undefined
      ? undefined
      : parseRecipient(channel, input.to, {
          country: input.country,
          defaultCountry: deps.defaultCountry,
          field: input.toField ?? "to",
        });
  // The account rule runs before the rate rules so its refusal is the answer a client sees first
  // (Fresns's order); it counts nothing.
  const { recipient, accountExists } = await applyAccountRule(deps.accounts, {
    appId: app.id,
    rule: input.rule,
    channel,
    recipient: parsed,
    accountId: input.accountId,
  });

  const locale = resolveLocale(input.locale, app.templates, app.defaultLocale);
  if (!findTemplate(app.templates, purpose, locale)) {
    throw new OtpError("TEMPLATE_MISSING", {
      internal: `no template for ${purpose}/${locale} in app ${app.id}`,
    });
  }

  const now = deps.clock.nowMs();
  const policy = app.policy;
  const testCode = fixedTestCode(app, recipient, deps.defaultCountry);
  const code = testCode ?? generateNumericCode(policy.codeLength);
  const id = newId("vf");
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
  const request: IssueRequest = {
    appId: app.id,
    // Test recipients (app-store review, end-to-end tests) are never delivered nor rate-limited.
    counters: testCode === null ? countersFor(app, recipient, input.clientIp) : [],
    slotKey: slotKey(channel, recipient.address, purpose),
    code: record,
    outbox:
      testCode === null
        ? {
            id: newId("msg"),
            appId: app.id,
            verificationId: id,
            channel,
            to: recipient.address,
            purpose,
            locale,
            sealedCode: deps.secrets.seal(code),
            createdAtMs: now,
            deliverBeforeMs: record.expiresAtMs,
            attempts: 0,
          }
        : null,
    ...(input.idempotencyKey
      ? { idempotency: { key: input.idempotencyKey, fingerprint: fingerprint(channel, recipient, purpose) } }
      : {}),
  };

  const outcome = await deps.store.issue(request, now);
  if (outcome.kind === "refused") {
    const byRecipient = outcome.rule.startsWith("recipient:");
    throw new OtpError(byRecipient ? "RESEND_TOO_SOON" : "RATE_LIMITED", {
      details: { retryAfterSeconds: outcome.retryAfterSeconds, rule: outcome.rule },
    });
  }
  if (outcome.kind === "replayed") {
    if (outcome.fingerprint !== request.idempotency?.fingerprint) {
      throw new OtpError("VALIDATION_FAILED", {
        message: "Idempotency-Key was already used for a different request",
        details: { field: "Idempotency-Key" },
      });
    }
    return result(outcome.record, recipient, outcome.resendAfterSeconds, accountExists, true);
  }
  if (request.outbox) deps.onQueued();
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

/** Every rate rule of one send; the store checks them all before counting any. */
function countersFor(app: App, recipient: Recipient, clientIp: string | undefined): CounterCheck[] {
  const { policy } = app;
  const counters: CounterCheck[] = policy.perRecipient.map((rule) => ({
    key: recipientCounterKey(recipient.channel, recipient.address, rule.windowSeconds),
    ...rule,
    rule: ruleName("recipient", rule),
  }));
  if (clientIp) {
    for (const rule of policy.perIp) {
      counters.push({ key: ipCounterKey(clientIp, rule.windowSeconds), ...rule, rule: ruleName("ip", rule) });
    }
  }
  for (const rule of policy.perApp) {
    counters.push({ key: appCounterKey(rule.windowSeconds), ...rule, rule: ruleName("app", rule) });
  }
  return counters;
}

function fixedTestCode(app: App, recipient: Recipient, defaultCountry: string): string | null {
  for (const test of app.testRecipients) {
    try {
      const parsed = parseRecipient(recipient.channel, test.to, { defaultCountry });
      if (parsed.address === recipient.address) return test.code;
    } catch {
      // a test recipient of the other channel does not parse as this one; it cannot match
    }
  }
  return null;
}

function fingerprint(channel: Channel, recipient: Recipient, purpose: Purpose): string {
  return sha256Hex(`${channel}\0${recipient.address}\0${purpose}`);
}
