import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { FixedClock } from "../../../test/fakes/fixed-clock.js";
import { createSqliteBackend, type SqliteBackend } from "../../storage/sqlite/index.js";
import { newApp } from "../apps/apps.js";
import type { CounterStore, Logger } from "../ports.js";
import { parseRecipient } from "../recipients.js";
import type { App } from "../types.js";
import { prefixBlockKey, pumpingCounters } from "./abuse-rules.js";
import { createPumpingWatch } from "./pumping-watch.js";

const PREFIX = "+44740";

/** A Logger typed by the port that keeps what it was told. */
function recordingLogger() {
  const lines: { level: string; object: object; message?: string | undefined }[] = [];
  const at =
    (level: string) =>
    (object: object, message?: string): void => {
      lines.push({ level, object, message });
    };
  const logger: Logger = { debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error") };
  return { logger, lines };
}

/** The detector runs after a zero timeout, off the request path; this lets it finish. */
async function detectorRound(): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, 0));
  await new Promise((resolve) => setImmediate(resolve));
}

let backend: SqliteBackend;
let clock: FixedClock;
beforeEach(() => {
  backend = createSqliteBackend({ path: ":memory:" });
  clock = new FixedClock();
});
afterEach(() => backend.close());

const app = newApp({ id: "shop" });

/** `n` SMS to the prefix, counted as a send counts them. */
async function sent(target: App, n: number, prefix = PREFIX): Promise<void> {
  const recipient = parseRecipient("sms", "+447400123456", { defaultCountry: "CN" });
  const counters = pumpingCounters(target.abuse.pumping, recipient, prefix).filter(
    (counter) => counter.key.startsWith("pump:pfx:") && counter.increment !== 0,
  );
  for (let i = 0; i < n; i++) {
    for (const counter of counters) {
      await backend.counters.hit(target.id, counter.key, counter.windowSeconds, clock.nowMs());
    }
  }
}

async function blocked(target: App, prefix = PREFIX): Promise<boolean> {
  return (await backend.counters.peek(target.id, prefixBlockKey(prefix), clock.nowMs())).count > 0;
}

describe("createPumpingWatch", () => {
  it("runs the detector after the caller returns, and logs the block it sets", async () => {
    const { logger, lines } = recordingLogger();
    const watch = createPumpingWatch({ counters: backend.counters, clock, logger });
    await sent(app, 55);
    watch(app, PREFIX);
    // nothing on the request path
    expect(await blocked(app)).toBe(false);
    await detectorRound();
    expect(await blocked(app)).toBe(true);
    expect(lines).toEqual([
      {
        level: "warn",
        object: { app: "shop", prefix: PREFIX },
        message: "SMS pumping suspected: prefix blocked",
      },
    ]);
  });

  it("looks at a prefix at most once per 5 s", async () => {
    const { logger } = recordingLogger();
    const watch = createPumpingWatch({ counters: backend.counters, clock, logger });
    await sent(app, 1);
    watch(app, PREFIX); // a look: one send is no spike
    await detectorRound();
    await sent(app, 60);
    clock.advanceSeconds(4);
    watch(app, PREFIX); // too soon: no look
    await detectorRound();
    expect(await blocked(app)).toBe(false);
    clock.advanceSeconds(1);
    watch(app, PREFIX);
    await detectorRound();
    expect(await blocked(app)).toBe(true);
  });

  it("watches each app's prefixes on their own", async () => {
    const { logger } = recordingLogger();
    const watch = createPumpingWatch({ counters: backend.counters, clock, logger });
    const other = newApp({ id: "other" });
    await sent(app, 1);
    await sent(other, 60);
    await sent(app, 60, "+44780");
    watch(app, PREFIX);
    watch(other, PREFIX);
    watch(app, "+44780");
    await detectorRound();
    expect(await blocked(app)).toBe(false);
    expect(await blocked(other)).toBe(true);
    expect(await blocked(app, "+44780")).toBe(true);
  });

  it("logs a failing detector instead of rejecting unhandled", async () => {
    const { logger, lines } = recordingLogger();
    const failing: CounterStore = {
      ...backend.counters,
      peek: () => Promise.reject(new Error("store down")),
    };
    const watch = createPumpingWatch({ counters: failing, clock, logger });
    watch(app, PREFIX);
    await detectorRound();
    expect(lines).toEqual([
      {
        level: "error",
        object: { err: expect.any(Error), prefix: PREFIX },
        message: "pumping detector failed",
      },
    ]);
  });
});
