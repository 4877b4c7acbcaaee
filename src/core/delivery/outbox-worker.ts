import type { AppDirectory } from "../apps/apps.js";
import { fillTemplate, findTemplate } from "../messages/templates.js";
import type { Clock, Logger, MessageSender, OutboxStore, RenderedMessage } from "../ports.js";
import { SendFailure } from "../ports.js";
import { maskAddress } from "../recipients.js";
import type { CodeSecrets } from "../secrets.js";
import type { App, OutboxMessage } from "../types.js";

/** Picks the ordered providers for a message (issue routing: per app, channel, country). */
export type SenderRouter = (message: OutboxMessage, app: App) => MessageSender[];

export interface OutboxWorkerOptions {
  outbox: OutboxStore;
  apps: AppDirectory;
  secrets: CodeSecrets;
  clock: Clock;
  logger: Logger;
  route: SenderRouter;
  /** messages claimed per round; batching keeps the store's per-message cost low */
  batchSize?: number;
  /** how often to look for due messages when nobody wakes the worker */
  pollIntervalMs?: number;
}

// A claimed message is invisible to other workers this long; a worker that dies mid-send loses
// its claim when the lease lapses and another delivers it (at-least-once, never lost).
const CLAIM_LEASE_MS = 30_000;
const FIRST_RETRY_DELAY_MS = 1_000;
const MAX_RETRY_DELAY_MS = 60_000;

export interface OutboxWorker {
  /** Delivers what is due now; resolves when the round is done. Returns how many were claimed. */
  runOnce(): Promise<number>;
  /** Asks for a round as soon as possible (a send was just committed). */
  wake(): void;
  start(): void;
  /** Stops polling and waits for the round in flight, so shutdown never cuts a delivery in half. */
  stop(): Promise<void>;
}

/** Drains the durable outbox: render, hand to the first provider that accepts, retry with backoff. */
export function createOutboxWorker(options: OutboxWorkerOptions): OutboxWorker {
  const { outbox, apps, secrets, clock, logger, route } = options;
  const batchSize = options.batchSize ?? 100;
  const pollIntervalMs = options.pollIntervalMs ?? 1_000;
  let running = false;
  let timer: NodeJS.Timeout | null = null;
  let inFlight: Promise<number> | null = null;
  let wakeRequested = false;

  async function deliver(message: OutboxMessage): Promise<void> {
    const now = clock.nowMs();
    const app = await apps.byId(message.appId);
    const code = secrets.open(message.sealedCode);
    if (now >= message.deliverBeforeMs || !app || code === null) {
      // A code past its validity is useless to its recipient; sending it would only cost money.
      const error = !app
        ? "app removed"
        : code === null
          ? "sealed with an unknown secret"
          : "expired before delivery";
      await outbox.markFailed(message, { provider: "none", status: "failed", atMs: now, error });
      logger.warn({ messageId: message.id, error }, "message dropped");
      return;
    }
    const rendered = render(message, app, code);
    let lastError = "no provider for this channel";
    let permanent = false;
    let provider = "none";
    for (const sender of route(message, app)) {
      provider = sender.id;
      try {
        const receipt = await sender.send(rendered);
        await outbox.markSent(message, {
          provider: sender.id,
          status: "sent",
          atMs: clock.nowMs(),
          ...(receipt.providerMessageId ? { providerMessageId: receipt.providerMessageId } : {}),
        });
        logger.info({ messageId: message.id, provider: sender.id, channel: message.channel }, "message sent");
        return;
      } catch (error) {
        lastError = error instanceof Error ? error.message : String(error);
        permanent = error instanceof SendFailure && error.permanent;
        logger.warn(
          {
            messageId: message.id,
            provider: sender.id,
            to: maskAddress(message.channel, message.to),
            err: lastError,
          },
          "provider failed",
        );
        // A permanent refusal (invalid number) would be refused by every provider alike.
        if (permanent) break;
      }
    }
    const failure = { provider, status: "failed" as const, atMs: clock.nowMs(), error: lastError };
    const nextAttemptAtMs = clock.nowMs() + retryDelayMs(message.attempts);
    if (permanent || nextAttemptAtMs >= message.deliverBeforeMs) {
      await outbox.markFailed(message, failure);
    } else {
      await outbox.markRetry(message, failure, nextAttemptAtMs);
    }
  }

  async function round(): Promise<number> {
    const messages = await outbox.claim(batchSize, CLAIM_LEASE_MS, clock.nowMs());
    await Promise.all(
      messages.map((message) =>
        deliver(message).catch((error: unknown) => {
          // The claim lapses and the message is tried again; nothing is lost.
          logger.error({ messageId: message.id, err: error }, "delivery crashed");
        }),
      ),
    );
    return messages.length;
  }

  async function loop(): Promise<void> {
    timer = null;
    if (!running) return;
    let claimed = 0;
    try {
      wakeRequested = false;
      inFlight = round();
      claimed = await inFlight;
    } catch (error) {
      logger.error({ err: error }, "outbox round failed");
    } finally {
      inFlight = null;
    }
    if (!running) return;
    // A full batch means more is waiting: go again at once instead of after the poll interval.
    const again = claimed >= batchSize || wakeRequested;
    timer = setTimeout(loop, again ? 0 : pollIntervalMs);
  }

  return {
    runOnce: round,
    wake() {
      if (!running) return;
      if (inFlight) {
        wakeRequested = true;
        return;
      }
      if (timer) clearTimeout(timer);
      timer = setTimeout(loop, 0);
    },
    start() {
      if (running) return;
      running = true;
      timer = setTimeout(loop, 0);
    },
    async stop() {
      running = false;
      if (timer) clearTimeout(timer);
      timer = null;
      await inFlight;
    },
  };

  function render(message: OutboxMessage, app: App, code: string): RenderedMessage {
    // Templates were checked at send time; the built-in ones are the floor if the app changed since.
    const template = findTemplate(app.templates, message.purpose, message.locale) ??
      findTemplate({}, message.purpose, "en") ?? { subject: "{app}", text: "{code}" };
    const values = {
      code,
      minutes: Math.max(1, Math.round((message.deliverBeforeMs - message.createdAtMs) / 60_000)),
      app: app.name,
    };
    return {
      messageId: message.id,
      appId: app.id,
      verificationId: message.verificationId,
      channel: message.channel,
      to: message.to,
      purpose: message.purpose,
      locale: message.locale,
      subject: fillTemplate(template.subject, values),
      text: fillTemplate(template.text, values),
      code,
    };
  }
}

/** Exponential backoff with full jitter, so retries of many messages do not arrive in lockstep. */
export function retryDelayMs(attempts: number): number {
  const ceiling = Math.min(MAX_RETRY_DELAY_MS, FIRST_RETRY_DELAY_MS * 2 ** Math.max(0, attempts - 1));
  return Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
}
