import { type Config, environmentProviderIds } from "./config/load.js";
import type { AppDirectory } from "./core/apps/apps.js";
import { createCircuitBreakers } from "./core/delivery/circuit-breaker.js";
import type { ReceiptRecorder } from "./core/delivery/delivery-receipts.js";
import {
  createOutboxWorker,
  DEFAULT_BREAKER_COOL_DOWN_MS,
  DEFAULT_BREAKER_FAILURES,
  type OutboxWorker,
} from "./core/delivery/outbox-worker.js";
import type { Clock, DevInbox, MessageSender, OutboxStore, VerificationStore } from "./core/ports.js";
import type { CodeSecrets } from "./core/secrets.js";
import type { Channel } from "./core/types.js";
import { createDevSender } from "./delivery/dev/dev-sender.js";
import { createProviderRegistry, type ProviderSurface } from "./delivery/provider-registry.js";
import type { RootLogger } from "./observability/logger.js";
import { countDeliveries, type DeliverySnapshot, type DeliveryTally } from "./observability/metrics.js";

/** Delivery as the server sees it, wherever the outbox worker runs. */
export interface Delivery {
  /** what the HTTP side needs: the channels served, the status-callback readers */
  providers: ProviderSurface;
  /** true when delivery also purges the store's expired rows (the server need not) */
  purges: boolean;
  /** starts draining the outbox */
  start(): void;
  /** a send was just committed: claim it soon */
  wake(): void;
  /** stops claiming, waits for the deliveries in flight, closes the providers */
  stop(): Promise<void>;
  /** false while delivery is down after a failure (`/readyz` says so); it is restarted meanwhile */
  healthy(): boolean;
  /** what the outbox worker did, as last known (a delivery thread reports it at most once a second) */
  deliveryMetrics(): DeliverySnapshot;
}

/** Delivery by an outbox worker on the calling thread; tests drive `worker` by hand. */
export interface InProcessDelivery extends Delivery {
  worker: OutboxWorker;
  /** the worker's counts, kept on this thread */
  tally: DeliveryTally;
}

export interface DeliveryRootOptions {
  config: Config;
  logger: RootLogger;
  clock: Clock;
  secrets: CodeSecrets;
  apps: AppDirectory;
  outbox: OutboxStore;
  devInbox: DevInbox;
  /** applies the receipts a provider reports over its own connection (SMPP deliver_sm) */
  receipts: ReceiptRecorder;
  /** the codes the messages carry: a message whose code ended while queued is dropped */
  codes?: Pick<VerificationStore, "get">;
  /** providers per channel; default: the dev sender in dev mode, none otherwise */
  senders?: Partial<Record<Channel, MessageSender[]>>;
}

/**
 * The outbox worker and the providers it delivers through. The delivery thread builds it there
 * (delivery-thread.ts); tests have the server build it on their own thread, to drive by hand.
 */
export function assembleDelivery(options: DeliveryRootOptions): InProcessDelivery {
  const { config, logger, clock, receipts } = options;
  const providers = createProviderRegistry({
    providers: config.providers,
    fromEnvironment: environmentProviderIds(config),
    routing: config.routing,
    logger,
    onReceipt: (receipt) => void receipts.record(receipt),
    ...(options.senders ? { overrides: options.senders } : {}),
    // Dev mode delivers a channel without a real provider to the dev inbox.
    ...(config.mode === "dev"
      ? {
          fallback: (channel: Channel) =>
            createDevSender({ channel, inbox: options.devInbox, logger, clock }),
        }
      : {}),
  });
  const { breaker, leaseSeconds, triesPerProvider } = config.delivery;
  // Counted where the worker settles each try and where its circuits change; read at scrapes.
  const counted = countDeliveries(
    options.outbox,
    createCircuitBreakers({
      clock,
      failureThreshold: breaker?.failureThreshold ?? DEFAULT_BREAKER_FAILURES,
      coolDownMs: (breaker?.coolDownSeconds ?? DEFAULT_BREAKER_COOL_DOWN_MS / 1000) * 1000,
      log: logger,
    }),
    providers.senders.map((sender) => sender.id),
  );
  const worker = createOutboxWorker({
    outbox: counted.outbox,
    apps: options.apps,
    secrets: options.secrets,
    clock,
    logger,
    route: providers.route,
    ...(options.codes ? { codes: options.codes } : {}),
    ...(triesPerProvider !== undefined ? { triesPerProvider } : {}),
    ...(leaseSeconds !== undefined ? { leaseMs: leaseSeconds * 1000 } : {}),
    breakers: counted.breakers,
  });
  return {
    providers,
    purges: false,
    worker,
    tally: counted.tally,
    deliveryMetrics: () => counted.tally.snapshot(),
    start: () => worker.start(),
    // The worker runs on this thread: it is up while the process is.
    healthy: () => true,
    wake: () => worker.wake(),
    async stop() {
      await worker.stop();
      await providers.close();
    },
  };
}
