import type { Clock, CounterStore, Logger } from "../ports.js";
import type { App } from "../types.js";
import { detectPumpingAnomaly } from "./abuse-rules.js";

// One look per prefix per interval is enough to catch a spike within seconds, and keeps the
// detector's reads from multiplying with the very traffic it watches.
const WATCH_INTERVAL_MS = 5_000;

/**
 * Runs the pumping anomaly detector for prefixes that just got SMS, after the response and at most
 * once per interval per prefix.
 */
export function createPumpingWatch(deps: { counters: CounterStore; clock: Clock; logger: Logger }) {
  const lastLook = new Map<string, number>();
  return (app: App, prefix: string): void => {
    const now = deps.clock.nowMs();
    const key = `${app.id}\0${prefix}`;
    if (now - (lastLook.get(key) ?? Number.NEGATIVE_INFINITY) < WATCH_INTERVAL_MS) return;
    if (lastLook.size > 100_000) lastLook.clear();
    lastLook.set(key, now);
    setTimeout(() => {
      detectPumpingAnomaly(deps.counters, app, prefix, now).then(
        (blocked) => {
          if (blocked) deps.logger.warn({ app: app.id, prefix }, "SMS pumping suspected: prefix blocked");
        },
        (error: unknown) => deps.logger.error({ err: error, prefix }, "pumping detector failed"),
      );
    }, 0);
  };
}
