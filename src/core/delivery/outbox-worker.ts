import type { AppDirectory } from "../apps/apps.js";
import { smsCost } from "../messages/sms-encoding.js";
import { composeSmsText } from "../messages/sms-text.js";
import { fillTemplate, findTemplate } from "../messages/templates.js";
import { createOutageLog } from "../outage-log.js";
import type {
  Clock,
  Logger,
  MessageSender,
  OutboxStore,
  RenderedMessage,
  SendReceipt,
  VerificationStore,
} from "../ports.js";
import { SendFailure } from "../ports.js";
import { maskAddress } from "../recipients.js";
import { type CodeSecrets, outboxSealContext } from "../secrets.js";
import type { App, CodeRecord, DeliveryRecord, OutboxMessage } from "../types.js";
import { type CircuitBreakers, createCircuitBreakers } from "./circuit-breaker.js";
import { withoutRecipient } from "./contact-mask.js";
import { storableError, storableMessageId } from "./provider-text.js";
import type { SenderRouter } from "./sender-router.js";

export type { SenderRouter } from "./sender-router.js";

export interface OutboxWorkerOptions {
  outbox: OutboxStore;
  apps: AppDirectory;
  secrets: CodeSecrets;
  clock: Clock;
  logger: Logger;
  route: SenderRouter;
  /** messages claimed at once; batching keeps the store's per-message cost low */
  batchSize?: number;
  /** how often to look for due messages when nobody wakes the worker */
  pollIntervalMs?: number;
  /** tries of one provider (each after a backoff) before failing over to the next (default 2) */
  triesPerProvider?: number;
  /** how long a claim hides a message from other workers (default 30 s) */
  leaseMs?: number;
  /** circuit breakers per provider; pass one instance to every worker of a process */
  breakers?: CircuitBreakers;
  /**
   * The codes the messages carry, to drop a message whose code was canceled or used while it was
   * queued, or is gone from the store, rather than send a dead code.
   */
  codes?: Pick<VerificationStore, "get">;
  /**
   * How long `stop` waits for outcomes the store will not take before giving them up (default
   * 10 s): they are then recorded nowhere, and their messages may be sent again.
   */
  stopGraceMs?: number;
}

// A claimed message is invisible to other workers this long; a worker that dies mid-send loses
// its claim when the lease lapses and another delivers it (at-least-once, never lost).
const DEFAULT_LEASE_MS = 30_000;
// The longest one provider call may take. Senders bound their own I/O within it (HTTP APIs and
// SMTP 18 s, SMTP's from the hand-over, SMPP 18 s in all), and this must not be shorter, or a try
// given up here would still go out (it counts as unconfirmed, never retried, when it is). A
// call must also end inside the lease with room to record its outcome, or another worker could
// claim and send the message while this one is still waiting: the room is 10 s, or half of a
// lease under 20 s. The config refuses a lease under 30 s (`delivery.leaseSeconds`), so that the
// senders always get the full 20 s; shorter ones reach the worker only from tests that drive it
// directly. A queueing sender's wait for a free connection is not counted: the clock starts at
// its hand-over.
const PROVIDER_TRY_TIMEOUT_MS = 20_000;
const LEASE_ROOM_MS = 10_000;
const FIRST_RETRY_DELAY_MS = 1_000;
// A message first claimed within this of being queued is sent without looking its code up.
const UNCHECKED_WHILE_FRESH_MS = 2_000;
const MAX_RETRY_DELAY_MS = 60_000;
// The outcomes the store would not take are all written again on one shared tick this often:
// recorded within a second of the store's return, well inside the lease of the claims they end (a
// store back within the lease sends nothing twice), however busy the worker (a full pipeline
// claims nothing, so no claim can tell it the store is back). One tick for all of them, not a
// timer each: PostgreSQL batches the settles of a tick into one statement, one write a second.
const SETTLE_RETRY_MS = 1_000;
// A worker stopping while the store is away waits this long for the outcomes it holds, then
// gives them up: a shutdown must end, and a lapsed claim sends at most once more.
const DEFAULT_STOP_GRACE_MS = 10_000;
// How many paused messages the worker remembers (a Set of ids: under a megabyte).
const PAUSED_REMEMBERED = 10_000;
const FULL_VALIDITY_WITHIN_MS = 5_000;
const DEFAULT_TRIES_PER_PROVIDER = 2;
// Five failures in a row is a provider in trouble, not bad luck; thirty seconds later one probe
// finds out whether it is back.
export const DEFAULT_BREAKER_FAILURES = 5;
export const DEFAULT_BREAKER_COOL_DOWN_MS = 30_000;

export interface OutboxWorker {
  /** Claims one batch and delivers it; resolves when it is done. Returns how many were claimed. */
  runOnce(): Promise<number>;
  /** Asks for a claim as soon as possible (a send was just committed). */
  wake(): void;
  /** Starts the background pipeline: claims whenever a batch fits among the deliveries in flight. */
  start(): void;
  /**
   * Stops claiming and waits for the deliveries in flight, so shutdown never cuts one in half; the
   * outcomes the store still will not take after `stopGraceMs` are given up (one error line).
   */
  stop(): Promise<void>;
}

/** Why a message's code can no longer be used: its delivery record's error, and how it is logged. */
interface Ended {
  reason: string;
  /** the code is gone from the store, which nobody asked for */
  unexpected: boolean;
}

/** Where a message stands in its delivery plan, and the provider to try now. */
interface Choice {
  sender: MessageSender;
  /** the provider's position in the route */
  index: number;
  probe: boolean;
}

/**
 * Drains the durable outbox. Each claim makes one try, so every try is a durable step: the plan of
 * a message is its route with each provider repeated `triesPerProvider` times, and the claim count
 * (`attempts`) says which step is due. A transient failure retries the same provider after an
 * exponential backoff with jitter, moves on to the next provider at once when that one's tries are
 * spent, and starts over from the first after a backoff when the whole route failed. Providers whose
 * circuit is open are skipped. A permanent refusal, or a next try that would come after the code
 * expired, ends the message as failed (the dead letter). A try whose provider had the message but
 * never answered is never repeated on that provider (it may have gone out): the message fails over
 * to the providers that have not had it, and ends as unconfirmed when none is left. Every try is
 * recorded as a delivery.
 */
export function createOutboxWorker(options: OutboxWorkerOptions): OutboxWorker {
  const { outbox, apps, secrets, clock, logger, route } = options;
  const batchSize = options.batchSize ?? 100;
  const pollIntervalMs = options.pollIntervalMs ?? 1_000;
  const triesPerProvider = options.triesPerProvider ?? DEFAULT_TRIES_PER_PROVIDER;
  const leaseMs = options.leaseMs ?? DEFAULT_LEASE_MS;
  const tryTimeoutMs = Math.min(
    PROVIDER_TRY_TIMEOUT_MS,
    Math.max(Math.floor(leaseMs / 2), leaseMs - LEASE_ROOM_MS),
  );
  const breakers =
    options.breakers ??
    createCircuitBreakers({
      clock,
      failureThreshold: DEFAULT_BREAKER_FAILURES,
      coolDownMs: DEFAULT_BREAKER_COOL_DOWN_MS,
      log: logger,
    });
  // Two batches in flight: one being delivered while the next is claimed and started.
  const maxInFlight = batchSize * 2;
  let running = false;
  let timer: NodeJS.Timeout | null = null;
  // The pending timer fires at once: a burst of sends, each waking the worker, sets it only once.
  let timerImmediate = false;
  let claiming = false;
  let backlog = false;
  let wakeRequested = false;
  const active = new Set<Promise<void>>();
  /**
   * The ids of the messages whose latest delivery record says every provider was paused, latest
   * last: the next pause of such a message records nothing new. Past PAUSED_REMEMBERED the oldest
   * is forgotten (one another process took over, say), and its next pause is recorded again.
   */
  const pausedRecorded = new Set<string>();
  /**
   * While the store is away a claim fails every poll: the first failure is logged with its error,
   * then one `still failing` line a minute with `suppressed`, the failures since the previous
   * line, and one `resumed` line when a claim works again (each failure logged, with its stack,
   * was a line a second).
   */
  const claimLog = createOutageLog({ clock, log: logger, what: "outbox claim" });
  let claimsFailing = false;
  /**
   * Outcomes the store would not take, told the same way for the whole episode (not per message):
   * `outbox settle failed` at the first; a reminder a minute with `waiting`, the outcomes not yet
   * recorded; `outbox settle resumed` once none waits, with `recorded`, how many were recorded late.
   */
  const newSettleLog = () => createOutageLog({ clock, log: logger, what: "outbox settle" });
  let settleLog = newSettleLog();
  /** the ids of the messages being delivered here, from their claim until their outcome is recorded */
  const delivering = new Set<string>();
  /** the messages whose outcome waits for the store, by id (the very objects their writes carry) */
  const unsettled = new Map<string, OutboxMessage>();
  let recordedLate = 0;
  const stopGraceMs = options.stopGraceMs ?? DEFAULT_STOP_GRACE_MS;
  /** set when stop's grace has run out: a settle that fails now is given up */
  let givingUp = false;
  /**
   * Ends the wait of each settle waiting to write again: `true` to write now (the store took
   * another write, so it is back), `false` to give up (stop's grace ran out).
   */
  const settleWaits = new Set<(writeNow: boolean) => void>();
  /** the shared tick that writes every waiting outcome again (set while one waits) */
  let settleTick: NodeJS.Timeout | null = null;
  /** the ids of the messages whose outcome was given up, told in one line when stop ends */
  let givenUp: string[] = [];

  /**
   * Why each message's code has ended for good (by message id), for the messages whose code may
   * have: looked up for a whole claim before any of it is delivered, so the reads go out together
   * and the messages are still handed over in the order claimed. Only the ends nothing can undo
   * count: a supersede can be (a cluster resend whose outbox commit fails gives the code back), and
   * so can running out of attempts (a right peek gives its attempt back). A message on its first
   * claim soon after it was queued, the usual case, is not looked up: its code can hardly have
   * ended yet, and the read would cost more than the rest of a delivery to the dev inbox. A code
   * the store cannot read is taken as live. A read that finds no code means it is gone (a Redis
   * flushed or restarted empty, a cluster send's code withdrawn after its row committed): every
   * check of it answers not found, so it has ended too. A store never loses a live code by
   * itself: each keeps a code past its expiry (Redis an hour, SQLite a day), and a message is
   * only looked up before its code expires (`deliver` drops it as expired first).
   */
  async function endedCodes(messages: OutboxMessage[], now: number): Promise<Map<string, Ended>> {
    const ended = new Map<string, Ended>();
    const { codes } = options;
    if (!codes) return ended;
    const waited = messages.filter(
      (message) => message.attempts > 1 || now - message.createdAtMs >= UNCHECKED_WHILE_FRESH_MS,
    );
    await Promise.all(
      waited.map(async (message) => {
        let record: CodeRecord | null;
        try {
          record = await codes.get(message.appId, message.verificationId);
        } catch {
          return;
        }
        if (record === null) ended.set(message.id, { reason: "code gone", unexpected: true });
        else if (record.status === "canceled" || record.status === "approved")
          ended.set(message.id, { reason: `code ${record.status}`, unexpected: false });
      }),
    );
    return ended;
  }

  /** Delivers one claimed message; `ended` says why its code can no longer be used, if it cannot. */
  async function deliver(
    message: OutboxMessage,
    leaseUntilMs: number,
    ended: Ended | undefined,
  ): Promise<void> {
    const now = clock.nowMs();
    // Whatever happens to it now, its latest record will say so (or the pause again, below).
    const pausedBefore = pausedRecorded.delete(message.id);
    const app = await apps.byId(message.appId);
    const code = secrets.open(message.sealedCode, outboxSealContext(message));
    if (now >= message.deliverBeforeMs || !app || code === null) {
      // A code past its validity is useless to its recipient; sending it would only cost money.
      const error = !app
        ? "app removed"
        : code === null
          ? "sealed with an unknown secret, or moved to another row"
          : "expired before delivery";
      await settle(message, () =>
        outbox.markFailed(message, { provider: "none", status: "failed", atMs: now, error }),
      );
      logger.warn({ ...logIds(message), error }, "message dropped");
      return;
    }
    if (ended) {
      // Nobody can use its code any more: sending it would only cost money and confuse.
      const error = ended.reason;
      await settle(message, () =>
        outbox.markFailed(message, { provider: "none", status: "failed", atMs: now, error }),
      );
      // A code gone from the store is lost state (a Redis emptied under the cluster), not a
      // caller's doing: worth a warning, where a cancel or a use is the usual course.
      if (ended.unexpected) logger.warn({ ...logIds(message), error }, "message dropped");
      else logger.info({ ...logIds(message), error }, "message dropped");
      return;
    }
    const routed = route(message, app);
    // A provider that took this message without answering may have sent it: never again through it.
    const senders = untriedBy(routed, message.unconfirmedBy);
    if (senders.length === 0 && routed.length > 0) {
      // Every provider of its route had it unconfirmed (the route changed since its last try).
      await settle(message, () =>
        outbox.markFailed(message, {
          provider: "none",
          status: "unconfirmed",
          atMs: now,
          error: "every provider on its route took it without answering",
        }),
      );
      return;
    }
    if (senders.length === 0) {
      await retryOrFail(
        message,
        failedTry("none", "no provider for this channel"),
        retryDelayMs(message.attempts),
      );
      return;
    }
    if (now + tryTimeoutMs > leaseUntilMs) {
      // The claim could lapse mid-send and another worker deliver it too; hand it back instead.
      const handedBack = failedTry("none", "claim too old to send safely; handed back");
      await settle(message, () => outbox.markRetry(message, handedBack, now));
      wakeRequested = true;
      return;
    }
    const rendered = render(message, app, code);
    const step = (message.attempts - 1) % (senders.length * triesPerProvider);
    // From here on a probe permit may be held: every path below reports the try's outcome.
    const choice = choose(senders, step, true);
    if (!choice) {
      // Every provider is paused: wait for the first to reopen rather than burn a try on nothing.
      // One whose probe is in flight reopens when the probe ends, which may take a whole try:
      // meanwhile the message backs off as after a failed try (it came back every second, and a
      // hanging provider's probe wrote ten records per message).
      const probeWaitMs = Math.min(retryDelayMs(message.attempts), tryTimeoutMs);
      const waitMs = Math.min(
        ...senders.map((sender) => {
          const reopensAtMs = breakers.retryAtMs(sender.id);
          return reopensAtMs === null ? probeWaitMs : reopensAtMs - now;
        }),
      );
      const paused = await retryOrFail(
        message,
        failedTry("none", "every provider is paused after repeated failures (circuit open)"),
        Math.max(waitMs, FIRST_RETRY_DELAY_MS),
        pausedBefore,
      );
      if (paused) rememberPaused(message);
      return;
    }
    const { sender } = choice;
    let receipt: SendReceipt;
    let withdrawn = false;
    try {
      receipt = await sendWithTimeout(sender, rendered, leaseUntilMs, () => {
        withdrawn = true;
      });
    } catch (error) {
      if (withdrawn) {
        // It waited in the sender's queue until the claim was too old to send safely, and was
        // never handed to the provider: nothing to blame it for, nothing sent. Hand it back.
        breakers.released(sender.id);
        const handedBack = failedTry(
          "none",
          "waited for a free connection until the claim was too old; handed back",
        );
        const nowMs = clock.nowMs();
        await settle(message, () => outbox.markRetry(message, handedBack, nowMs));
        wakeRequested = true;
        return;
      }
      const text = withoutRecipient(
        error instanceof Error ? error.message : String(error),
        message.channel,
        message.to,
        code,
      );
      const permanent = error instanceof SendFailure && error.permanent;
      const unconfirmed = error instanceof SendFailure && error.unconfirmed;
      // A permanent refusal is about the recipient, and proves the provider answers; a provider
      // that leaves a call unanswered is in trouble, whatever became of the message.
      if (permanent) breakers.succeeded(sender.id);
      else breakers.failed(sender.id);
      logger.warn(
        {
          ...logIds(message),
          provider: sender.id,
          to: maskAddress(message.channel, message.to),
          permanent,
          ...(unconfirmed ? { unconfirmed } : {}),
          ...(choice.probe ? { probe: true } : {}),
          err: text,
        },
        unconfirmed
          ? "provider did not answer after taking the message: it may have gone out, so it is not tried there again"
          : "provider failed",
      );
      const failure = failedTry(sender.id, text);
      // A permanent refusal (invalid number) would be refused by every provider alike.
      if (permanent) {
        await settle(message, () => outbox.markFailed(message, failure));
        return;
      }
      if (unconfirmed) {
        // Another try through this provider would send the code a second time whenever this one
        // went out (a vendor answering late still delivers: one code went out 8 times), so it is
        // never tried again; the next provider on the route that has not had it is tried at once,
        // as after any failure (a hanging primary must not lose every code until its breaker
        // opens). A code goes out at most once per provider; with none left it ends unconfirmed,
        // and a code that never came costs its reader a resend. Our id goes with the record: a
        // gateway without ids of its own names that one in its receipts, which may still settle it.
        const record: DeliveryRecord = {
          ...failure,
          status: "unconfirmed",
          providerMessageId: storableMessageId(message.id),
        };
        const left = senders.filter((other) => other !== sender);
        if (left.length === 0) await settle(message, () => outbox.markFailed(message, record));
        else await retryOrFail(message, record, 0);
        return;
      }
      await retryOrFail(message, failure, nextDelayMs(message, senders, step, choice));
      return;
    }
    breakers.succeeded(sender.id);
    if (clock.nowMs() > leaseUntilMs) {
      logger.warn(
        { ...logIds(message), provider: sender.id },
        "the claim lapsed during the send: another worker may deliver this message too",
      );
    }
    // Providers without an id of their own (a webhook answering 204) are matched by ours in receipts.
    const providerMessageId = storableMessageId(receipt.providerMessageId ?? message.id);
    const sent: DeliveryRecord = {
      provider: sender.id,
      status: "sent",
      atMs: clock.nowMs(),
      providerMessageId,
    };
    await settle(message, () => outbox.markSent(message, sent));
    logger.info(
      {
        ...logIds(message),
        provider: sender.id,
        // what the provider's delivery receipt names, so its "delivery receipt" line can be matched
        providerMessageId,
        channel: message.channel,
        attempts: message.attempts,
        ...(choice.probe ? { probe: true } : {}),
        ...(message.channel === "sms" ? smsCost(rendered.text) : {}),
      },
      "message sent",
    );
  }

  /** The provider for `step` (the route repeated per try), skipping open circuits, in route order. */
  function choose(senders: MessageSender[], step: number, takePermit: boolean): Choice | null {
    const planned = Math.floor(step / triesPerProvider);
    for (let offset = 0; offset < senders.length; offset++) {
      const index = (planned + offset) % senders.length;
      const sender = senders[index] as MessageSender;
      if (!takePermit) {
        if (breakers.state(sender.id) !== "open") return { sender, index, probe: false };
        continue;
      }
      const permit = breakers.permit(sender.id);
      if (permit !== "skip") return { sender, index, probe: permit === "probe" };
    }
    return null;
  }

  /**
   * After a transient failure at `step`: back off before the same provider's next try or before a
   * new pass over the route; fail over to a different provider at once.
   */
  function nextDelayMs(
    message: OutboxMessage,
    senders: MessageSender[],
    step: number,
    tried: Choice,
  ): number {
    const planLength = senders.length * triesPerProvider;
    const nextStep = step + 1;
    if (nextStep % planLength === 0) return retryDelayMs(message.attempts);
    const next = choose(senders, nextStep, false);
    if (next === null || next.index === tried.index) return retryDelayMs(message.attempts);
    return 0;
  }

  /**
   * Schedules the message's next try after `delayMs`, or fails it when that would come after its
   * code expired; true when it was rescheduled. `recordedAlready`: the message's latest delivery
   * record says what `failure` says, so a reschedule records nothing.
   */
  async function retryOrFail(
    message: OutboxMessage,
    failure: DeliveryRecord,
    delayMs: number,
    recordedAlready = false,
  ): Promise<boolean> {
    const nextAttemptAtMs = clock.nowMs() + delayMs;
    if (nextAttemptAtMs >= message.deliverBeforeMs) {
      await settle(message, () => outbox.markFailed(message, failure));
      logger.warn(
        { ...logIds(message), err: failure.error },
        "message undeliverable before its code expires",
      );
      return false;
    }
    await settle(message, () =>
      recordedAlready
        ? outbox.postpone(message, nextAttemptAtMs)
        : outbox.markRetry(message, failure, nextAttemptAtMs),
    );
    // A failover is due at once: run another round instead of waiting for the poll.
    if (delayMs === 0) wakeRequested = true;
    return true;
  }

  /**
   * Records a try's outcome (`write`, one of the store's settles), writing it again until the
   * store takes it. An outcome lost is worse than one late: the claim would lapse, and another
   * worker send the message again through the very provider that had just sent it (a PostgreSQL
   * stall of 8 s sent every message in flight twice). So a message whose outcome waits stays in
   * flight, past its lease if need be: the stores' settles are safe late (a final outcome only
   * ends a message still queued, a retry only reschedules the claim it ends, never a later one),
   * and this worker does not send it again if it claims it anew (`delivering`). Another worker
   * can, only after an outage longer than the lease. Only a stopping worker gives up, once its
   * grace has run out; true when it was recorded.
   */
  async function settle(message: OutboxMessage, write: () => Promise<void>): Promise<boolean> {
    for (;;) {
      try {
        await write();
        if (unsettled.delete(message.id)) {
          // The store is back: the others waiting write now rather than at their own next turn,
          // each second of which another worker could take a message whose lease lapsed meanwhile.
          wakeSettles(true);
          recordedLate += 1;
          if (unsettled.size === 0) {
            settleLog.succeeded({ recorded: recordedLate });
            recordedLate = 0;
          }
        }
        return true;
      } catch (error) {
        // The first outcome refused is told before the others in flight have been refused: a
        // count then would always be 1, so that line has none; the reminders count them.
        const first = unsettled.size === 0;
        unsettled.set(message.id, message);
        settleLog.failed(error, first ? undefined : { waiting: unsettled.size });
      }
      if (!(await settleWait())) {
        unsettled.delete(message.id);
        givenUp.push(message.id);
        return false;
      }
    }
  }

  /**
   * Waits for the next shared tick (at most SETTLE_RETRY_MS), or less when the store is seen
   * back, before a settle's next write; false when stop's grace ran out meanwhile.
   */
  function settleWait(): Promise<boolean> {
    if (givingUp) return Promise.resolve(false);
    return new Promise((resolve) => {
      const end = (writeNow: boolean) => {
        settleWaits.delete(end);
        resolve(writeNow);
      };
      settleWaits.add(end);
      settleTick ??= setTimeout(() => {
        settleTick = null;
        wakeSettles(true);
      }, SETTLE_RETRY_MS);
    });
  }

  function wakeSettles(writeNow: boolean): void {
    if (settleTick) clearTimeout(settleTick);
    settleTick = null;
    if (settleWaits.size === 0) return;
    for (const end of [...settleWaits]) end(writeNow);
  }

  function rememberPaused(message: OutboxMessage): void {
    if (pausedRecorded.size >= PAUSED_REMEMBERED) {
      const [oldest] = pausedRecorded;
      if (oldest !== undefined) pausedRecorded.delete(oldest);
    }
    pausedRecorded.add(message.id);
  }

  function failedTry(provider: string, error: string): DeliveryRecord {
    // The text often quotes the provider's answer, whatever it held.
    return { provider, status: "failed", atMs: clock.nowMs(), error: storableError(error) };
  }

  /**
   * One provider call, given up after `tryTimeoutMs`. For a queueing sender the clock starts, and
   * the lease is checked again, when the message leaves the sender's queue: a message that would
   * reach the provider too late for its claim is withdrawn there (`onWithdrawn`), never sent.
   */
  async function sendWithTimeout(
    sender: MessageSender,
    message: RenderedMessage,
    leaseUntilMs: number,
    onWithdrawn: () => void,
  ): Promise<SendReceipt> {
    let timeout: NodeJS.Timeout | undefined;
    let expire: (failure: SendFailure) => void = () => {};
    const expired = new Promise<never>((_, reject) => {
      expire = reject;
    });
    const startClock = () => {
      timeout = setTimeout(
        // The sender overran its own bound, and may be sending still: its outcome is unknown.
        () =>
          expire(new SendFailure(`${sender.id}: no answer within ${tryTimeoutMs} ms`, { unconfirmed: true })),
        tryTimeoutMs,
      );
    };
    try {
      if (!sender.queuesMessages) {
        startClock();
        return await Promise.race([sender.send(message), expired]);
      }
      const sending = sender.send(message, () => {
        if (clock.nowMs() + tryTimeoutMs > leaseUntilMs) {
          onWithdrawn();
          return false;
        }
        startClock();
        return true;
      });
      return await Promise.race([sending, expired]);
    } finally {
      clearTimeout(timeout);
    }
  }

  function deliverSafely(message: OutboxMessage, leaseUntilMs: number, ended?: Ended): Promise<void> {
    if (delivering.has(message.id)) {
      // Claimed again, its lease lapsed, while its outcome here still waits for the store (an
      // outage longer than the lease): sending it would send it twice. The outcome waiting ends
      // it: it takes over the new claim's count, so that a retry (which reschedules only the
      // claim it names) reschedules this one, held here too, rather than leave it to lapse.
      const waiting = unsettled.get(message.id);
      if (waiting && message.attempts > waiting.attempts) waiting.attempts = message.attempts;
      logger.debug(logIds(message), "claimed again while its outcome waits for the store: not sent");
      return Promise.resolve();
    }
    delivering.add(message.id);
    return deliver(message, leaseUntilMs, ended)
      .catch((error: unknown) => {
        // The claim lapses and the message is tried again; nothing is lost.
        logger.error({ ...logIds(message), err: error }, "delivery crashed");
      })
      .finally(() => delivering.delete(message.id));
  }

  /** One claim, delivered to the end (runOnce: tests and tools drive the worker by hand). */
  async function round(): Promise<number> {
    const claimedAtMs = clock.nowMs();
    const messages = await outbox.claim(batchSize, leaseMs, claimedAtMs);
    const leaseUntilMs = claimedAtMs + leaseMs;
    const ended = await endedCodes(messages, claimedAtMs);
    // In flight like the pipeline's: stop waits for them, and gives up their outcomes as it does.
    const deliveries = messages.map((message) => {
      const delivery: Promise<void> = deliverSafely(message, leaseUntilMs, ended.get(message.id)).finally(
        () => active.delete(delivery),
      );
      active.add(delivery);
      return delivery;
    });
    await Promise.all(deliveries);
    return messages.length;
  }

  function schedule(delayMs: number): void {
    if (!running || claiming || (timer && timerImmediate)) return;
    if (timer) clearTimeout(timer);
    timerImmediate = delayMs === 0;
    timer = setTimeout(pump, delayMs);
  }

  /**
   * The background loop is a pipeline, not rounds: it claims a new batch as soon as there is room
   * for one among the deliveries in flight, so a message committed while a slow provider holds
   * earlier ones is claimed at once instead of after the slowest message of a round. Claims stay
   * whole batches, because each claim is a write transaction of its own.
   */
  async function pump(): Promise<void> {
    timer = null;
    timerImmediate = false;
    if (!running || claiming) return;
    if (maxInFlight - active.size < batchSize) {
      // full: the next delivery to finish calls again
      backlog = true;
      return;
    }
    claiming = true;
    wakeRequested = false;
    let claimed = 0;
    try {
      const claimedAtMs = clock.nowMs();
      const messages = await outbox.claim(batchSize, leaseMs, claimedAtMs);
      claimed = messages.length;
      const ended = await endedCodes(messages, claimedAtMs);
      for (const message of messages) {
        const delivery: Promise<void> = deliverSafely(
          message,
          claimedAtMs + leaseMs,
          ended.get(message.id),
        ).finally(() => {
          active.delete(delivery);
          if (backlog || wakeRequested) schedule(0);
        });
        active.add(delivery);
      }
      claimLog.succeeded();
      // (as a settle written again does: the store is back)
      if (claimsFailing) wakeSettles(true);
      claimsFailing = false;
    } catch (error) {
      claimLog.failed(error);
      claimsFailing = true;
    } finally {
      claiming = false;
    }
    // A full batch means more is waiting: go again at once instead of after the poll interval.
    backlog = claimed >= batchSize;
    schedule(backlog || wakeRequested ? 0 : pollIntervalMs);
  }

  return {
    runOnce: round,
    wake() {
      if (!running) return;
      wakeRequested = true;
      schedule(0);
    },
    start() {
      if (running) return;
      running = true;
      schedule(0);
    },
    async stop() {
      running = false;
      if (timer) clearTimeout(timer);
      timer = null;
      // A store that stays away must not hold the shutdown for ever: past the grace, the
      // outcomes still waiting for it are given up.
      const grace = setTimeout(() => {
        givingUp = true;
        wakeSettles(false);
      }, stopGraceMs);
      try {
        // Deliveries in flight finish and record their outcome; none is cut in half.
        while (claiming || active.size > 0) {
          await Promise.all(active);
          if (claiming) await new Promise((resolve) => setImmediate(resolve));
        }
      } finally {
        clearTimeout(grace);
        givingUp = false;
      }
      if (givenUp.length > 0) {
        logger.error(
          { lost: givenUp.length, messageIds: givenUp },
          "stopped with outcomes the store never took: their messages may be sent again",
        );
        // that line ends the episode: a later start tells the next one from its first failure
        givenUp = [];
        recordedLate = 0;
        settleLog = newSettleLog();
      }
    },
  };

  function render(message: OutboxMessage, app: App, code: string): RenderedMessage {
    const minutes = minutesLeft(message, clock.nowMs());
    // Templates were checked at send time; the built-in ones are the floor if the app changed since.
    const template = findTemplate(app.templates, message.purpose, message.locale, minutes) ??
      findTemplate({}, message.purpose, "en", minutes) ?? { subject: "{app}", text: "{code}" };
    const values = { code, minutes, app: app.name };
    const text = fillTemplate(template.text, values);
    return {
      messageId: message.id,
      appId: app.id,
      verificationId: message.verificationId,
      channel: message.channel,
      to: message.to,
      purpose: message.purpose,
      locale: message.locale,
      subject: fillTemplate(template.subject, values),
      text: message.channel === "sms" && app.sms ? composeSmsText(text, code, message.locale, app.sms) : text,
      code,
      minutes,
    };
  }
}

/** The route without the providers an earlier try reached without an answer. */
function untriedBy(senders: MessageSender[], unconfirmedBy: readonly string[] | undefined): MessageSender[] {
  if (!unconfirmedBy || unconfirmedBy.length === 0) return senders;
  return senders.filter((sender) => !unconfirmedBy.includes(sender.id));
}

/**
 * The whole minutes a message's code has left at `nowMs` (`deliverBeforeMs` is the code's expiry),
 * at least 1, so that a message delivered late does not promise the validity it no longer has. A
 * message rendered within FULL_VALIDITY_WITHIN_MS of its send, the usual case, states the code's
 * whole validity ("10", not "9", for a 10-minute code): those seconds are less than it takes to
 * reach its reader anyway.
 */
function minutesLeft(message: OutboxMessage, nowMs: number): number {
  const validityMs = message.deliverBeforeMs - message.createdAtMs;
  const leftMs = Math.min(validityMs, message.deliverBeforeMs - nowMs + FULL_VALIDITY_WITHIN_MS);
  return Math.max(1, Math.floor(leftMs / 60_000));
}

/**
 * What a delivery's log lines carry to be matched with their verification: the message id alone is
 * in no API answer, the app and verification ids are in every one.
 */
function logIds(message: OutboxMessage): { messageId: string; appId: string; verificationId: string } {
  return { messageId: message.id, appId: message.appId, verificationId: message.verificationId };
}

/** Exponential backoff with full jitter, so retries of many messages do not arrive in lockstep. */
export function retryDelayMs(attempts: number): number {
  const ceiling = Math.min(MAX_RETRY_DELAY_MS, FIRST_RETRY_DELAY_MS * 2 ** Math.max(0, attempts - 1));
  return Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
}
