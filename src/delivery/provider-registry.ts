import {
  type ProviderConfig,
  providerChannel,
  providerWarnings,
  type RoutingConfig,
} from "../config/provider-schema.js";
import type { DeliveryReceipt, StatusCallbackHandler } from "../core/delivery/delivery-receipts.js";
import {
  createSenderRouter,
  routeKey,
  routeKeyChannel,
  type SenderRouter,
} from "../core/delivery/sender-router.js";
import type { Logger, MessageSender } from "../core/ports.js";
import { CHANNELS, type Channel } from "../core/types.js";
import { createSmtpEmailSender } from "./email/smtp/smtp-email-sender.js";
import { createAlibabaSmsSender } from "./sms/alibaba/alibaba-sms-sender.js";
import { createSmppSmsSender } from "./sms/smpp/smpp-sms-sender.js";
import { createTencentSmsSender } from "./sms/tencent/tencent-sms-sender.js";
import { createTwilioSmsSender } from "./sms/twilio/twilio-sms-sender.js";
import { createTwilioStatusCallback } from "./sms/twilio/twilio-status-callback.js";
import { createWebhookSmsSender } from "./sms/webhook/webhook-sms-sender.js";
import { createWebhookStatusCallback } from "./sms/webhook/webhook-status-callback.js";

export interface ProviderDeps {
  logger: Logger;
  /** receipts a provider reports over its own connection (SMPP deliver_sm) */
  onReceipt: (receipt: DeliveryReceipt) => void;
}

/**
 * Builds the sender a provider entry describes: a small switch registry, like supabase
 * `GetSmsProvider`. The entry was validated against its type's schema at startup.
 */
export function createSender(provider: ProviderConfig, deps: ProviderDeps): MessageSender {
  switch (provider.type) {
    case "smtp":
      return createSmtpEmailSender({
        id: provider.id,
        url: provider.url,
        from: provider.from,
        ...(provider.replyTo !== undefined ? { replyTo: provider.replyTo } : {}),
        ...(provider.pool !== undefined ? { pool: provider.pool } : {}),
        ...(provider.tls !== undefined ? { tls: provider.tls } : {}),
      });
    case "twilio": {
      const {
        id,
        type: _type,
        authToken,
        apiKeySid,
        apiKeySecret,
        from,
        messagingServiceSid,
        ...rest
      } = provider;
      const credentials =
        apiKeySid !== undefined && apiKeySecret !== undefined
          ? { apiKeySid, apiKeySecret }
          : { authToken: authToken as string };
      const sender = messagingServiceSid !== undefined ? { messagingServiceSid } : { from: from as string };
      return createTwilioSmsSender({ id, ...rest, ...credentials, ...sender });
    }
    case "tencent": {
      const { type: _type, ...options } = provider;
      return createTencentSmsSender(options);
    }
    case "alibaba": {
      const { type: _type, ...options } = provider;
      return createAlibabaSmsSender(options);
    }
    case "webhook": {
      const { type: _type, ...options } = provider;
      return createWebhookSmsSender(options);
    }
    case "smpp": {
      const { type: _type, ...options } = provider;
      return createSmppSmsSender({
        ...options,
        logger: deps.logger,
        onReceipt: (receipt) =>
          deps.onReceipt({
            provider: provider.id,
            providerMessageId: receipt.providerMessageId,
            status: receipt.status,
            ...(receipt.error ? { error: receipt.error } : {}),
          }),
      });
    }
  }
}

/** The status-callback reader of a provider that posts them (`POST /v1/callbacks/{id}`), if any. */
export function createStatusCallback(provider: ProviderConfig): StatusCallbackHandler | undefined {
  if (provider.type === "twilio" && provider.authToken !== undefined) {
    return createTwilioStatusCallback({
      provider: provider.id,
      authToken: provider.authToken,
      ...(provider.statusCallbackUrl !== undefined ? { statusCallbackUrl: provider.statusCallbackUrl } : {}),
    });
  }
  if (provider.type === "webhook")
    return createWebhookStatusCallback({ provider: provider.id, secret: provider.secret });
  return undefined;
}

/** What the request thread needs to know of the providers when another thread delivers. */
export interface ProviderSurface {
  /** a channel with no provider at all is disabled (DESIGN.md: production warns at startup) */
  channelEnabled(channel: Channel): boolean;
  callbacks: StatusCallbackHandler[];
}

/**
 * The providers' surface without building a sender (an SMPP sender would bind a session of its
 * own): channels served by a configured provider, or by the dev inbox when `devFallback`.
 * Agrees with `createProviderRegistry` built from the same configuration without overrides.
 */
export function describeProviders(providers: ProviderConfig[], devFallback: boolean): ProviderSurface {
  const served = new Set(providers.map(providerChannel));
  return {
    channelEnabled: (channel) => devFallback || served.has(channel),
    callbacks: providers.flatMap((provider) => createStatusCallback(provider) ?? []),
  };
}

export interface ProviderRegistryOptions extends ProviderDeps {
  providers: ProviderConfig[];
  /** the ids of the providers the environment made, whose warnings name its variables */
  fromEnvironment?: readonly string[];
  routing: RoutingConfig;
  /** senders that replace the configured providers of their channel (tests, embedding) */
  overrides?: Partial<Record<Channel, MessageSender[]>>;
  /** senders for a channel no provider serves (dev mode: the dev inbox) */
  fallback?: (channel: Channel) => MessageSender | undefined;
}

export interface ProviderRegistry extends ProviderSurface {
  route: SenderRouter;
  senders: MessageSender[];
  /** closes every sender (SMTP pools, SMPP sessions) */
  close(): Promise<void>;
}

/**
 * Builds every configured provider once and the route table over them: `routing` as configured,
 * and for a channel without its own entry, every provider of that channel in declaration order.
 */
export function createProviderRegistry(options: ProviderRegistryOptions): ProviderRegistry {
  const overrides = options.overrides ?? {};
  for (const warning of providerWarnings(options.providers, options.fromEnvironment)) {
    options.logger.warn({ provider: warning.provider, key: warning.key }, warning.message);
  }
  const byId = new Map<string, MessageSender>();
  const callbacks: StatusCallbackHandler[] = [];
  const byChannel: Record<Channel, MessageSender[]> = { email: [], sms: [] };
  for (const provider of options.providers) {
    const channel = providerChannel(provider);
    // An overridden channel's providers are never built: an SMPP sender would connect at once.
    if (overrides[channel]) continue;
    const sender = createSender(provider, options);
    byId.set(provider.id, sender);
    byChannel[channel].push(sender);
    const callback = createStatusCallback(provider);
    if (callback) callbacks.push(callback);
  }

  const table = new Map<string, MessageSender[]>();
  for (const [key, ids] of Object.entries(options.routing)) {
    const senders = ids.flatMap((id) => byId.get(id) ?? []);
    if (senders.length > 0) table.set(key, senders);
  }
  const fallbacks: MessageSender[] = [];
  for (const channel of CHANNELS) {
    const override = overrides[channel];
    if (override) {
      for (const key of [...table.keys()]) if (routeKeyChannel(key) === channel) table.delete(key);
      table.set(routeKey(undefined, channel), override);
      continue;
    }
    if (byChannel[channel].length === 0) {
      const fallback = options.fallback?.(channel);
      if (fallback) {
        fallbacks.push(fallback);
        byChannel[channel].push(fallback);
      }
    }
    const defaultKey = routeKey(undefined, channel);
    if (!table.has(defaultKey) && byChannel[channel].length > 0) table.set(defaultKey, byChannel[channel]);
  }

  // An override left undefined (`{ sms: undefined }`) is no override.
  const overridden = Object.values(overrides).flatMap((list) => list ?? []);
  const senders = [...byId.values(), ...fallbacks, ...overridden];
  return {
    route: createSenderRouter(table),
    channelEnabled: (channel) => (overrides[channel] ?? byChannel[channel]).length > 0,
    callbacks,
    senders,
    async close() {
      await Promise.all(senders.map((sender) => sender.close?.()));
    },
  };
}
