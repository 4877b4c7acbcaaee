import { parsePhoneNumberFromString } from "libphonenumber-js/max";
import type { MessageSender } from "../ports.js";
import { type App, CHANNELS, type Channel, type OutboxMessage } from "../types.js";

/** Picks the ordered providers for a message (issue routing: per app, channel, country). */
export type SenderRouter = (message: OutboxMessage, app: App) => MessageSender[];

/**
 * Routes keyed `[app/]channel[:COUNTRY]`: `sms`, `sms:CN`, `acme/email`, `acme/sms:CN`. An app's
 * routes beat the global ones, and a country's route beats its channel's.
 */
export type RouteTable = ReadonlyMap<string, readonly MessageSender[]>;

/** The route key of an app, channel and destination region (no region for email). */
export function routeKey(appId: string | undefined, channel: Channel, region?: string): string {
  return `${appId === undefined ? "" : `${appId}/`}${channel}${region === undefined ? "" : `:${region}`}`;
}

/**
 * The channel a route key routes: its last path segment without the country, so an app id that
 * happens to contain a channel's name (`email-team/sms`) never decides it.
 */
export function routeKeyChannel(key: string): Channel | undefined {
  const channel = key.slice(key.lastIndexOf("/") + 1).split(":")[0];
  return CHANNELS.find((each) => each === channel);
}

/**
 * A router over a route table: the most specific of `app/channel:CC`, `app/channel`, `channel:CC`,
 * `channel` that exists. An app that names its own providers keeps them for every destination
 * unless it also names per-country ones.
 */
export function createSenderRouter(table: RouteTable): SenderRouter {
  const countryRoutes = [...table.keys()].some((key) => key.includes(":"));
  return (message, app) => {
    // Parsing the number costs tens of microseconds; skip it when no route depends on the country.
    const region = countryRoutes && message.channel === "sms" ? regionOf(message.to) : undefined;
    const candidates =
      region === undefined
        ? [routeKey(app.id, message.channel), routeKey(undefined, message.channel)]
        : [
            routeKey(app.id, message.channel, region),
            routeKey(app.id, message.channel),
            routeKey(undefined, message.channel, region),
            routeKey(undefined, message.channel),
          ];
    for (const key of candidates) {
      const senders = table.get(key);
      if (senders) return [...senders];
    }
    return [];
  };
}

/** ISO 3166 alpha-2 region of an E.164 number, if it has one (+1 numbers resolve to US, CA, …). */
export function regionOf(e164: string): string | undefined {
  return parsePhoneNumberFromString(e164)?.country;
}
