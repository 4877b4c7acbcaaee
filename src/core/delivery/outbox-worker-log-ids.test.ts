import { afterEach, describe, expect, it } from "vitest";
import { createTestServer, type TestServer } from "../../../test/harness.js";
import { type Logger, type MessageSender, SendFailure } from "../ports.js";
import { CodeSecrets } from "../secrets.js";
import type { CodeRecord } from "../types.js";
import { createOutboxWorker, type OutboxWorkerOptions } from "./outbox-worker.js";

// Regression: the worker's lines named only the message id (`msg_…`), which no API answer shows,
// so a failed or dropped delivery could not be matched to its verification. @see logs review 3

const SECRET = "outbox-log-ids-secret-0123456789";

let server: TestServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

interface Line {
  level: "debug" | "info" | "warn" | "error";
  fields: Record<string, unknown>;
  message: string | undefined;
}

function recordingLogger(): { logger: Logger; lines: Line[] } {
  const lines: Line[] = [];
  const at =
    (level: Line["level"]) =>
    (fields: object, message?: string): void => {
      lines.push({ level, fields: fields as Record<string, unknown>, message });
    };
  return { logger: { debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error") }, lines };
}

/** Queues one SMS and returns a worker over it that logs to `lines`; `overrides` change the worker. */
async function setUp(sender: MessageSender, overrides: Partial<OutboxWorkerOptions> = {}) {
  server = await createTestServer({ env: { VERIFYD_SECRET: SECRET } });
  const app = await server.engine.apps.byId("default");
  if (!app) throw new Error("the app default is missing");
  const sent = await server.engine.sendCode({
    app,
    channel: "sms",
    to: "+8613800138000",
    purpose: "sign_in",
    rule: "any",
  });
  const { logger, lines } = recordingLogger();
  const worker = createOutboxWorker({
    outbox: server.server.backend.outbox,
    apps: server.engine.apps,
    secrets: new CodeSecrets([SECRET]),
    clock: server.clock,
    logger,
    route: () => [sender],
    triesPerProvider: 1,
    ...overrides,
  });
  return { worker, lines, verificationId: sent.record.id, clock: server.clock };
}

const accepting: MessageSender = {
  id: "ok",
  channel: "sms",
  send: async () => ({ providerMessageId: "p-1" }),
};
const failing: MessageSender = {
  id: "down",
  channel: "sms",
  send: async () => {
    throw new SendFailure("down: HTTP 503");
  },
};

function linesNamed(lines: Line[], message: string): Line[] {
  return lines.filter((line) => line.message === message);
}

describe("outbox worker log lines", () => {
  it("name the app and verification of a message sent", async () => {
    const { worker, lines, verificationId } = await setUp(accepting);
    await worker.runOnce();
    const [sentLine] = linesNamed(lines, "message sent");
    expect(sentLine?.fields).toMatchObject({
      messageId: expect.stringMatching(/^msg_/),
      appId: "default",
      verificationId,
      provider: "ok",
      providerMessageId: "p-1",
    });
  });

  it("name the app and verification of a provider's failure and of a message undeliverable in time", async () => {
    const { worker, lines, verificationId, clock } = await setUp(failing);
    await worker.runOnce();
    // the next try, at least half a second later, would come after the 10-minute code expired
    clock.set(clock.nowMs() + 599_500);
    await worker.runOnce();
    const failed = linesNamed(lines, "provider failed");
    const undeliverable = linesNamed(lines, "message undeliverable before its code expires");
    expect(failed).toHaveLength(2);
    expect(undeliverable).toHaveLength(1);
    for (const line of [...failed, ...undeliverable])
      expect(line.fields).toMatchObject({ appId: "default", verificationId, messageId: expect.any(String) });
  });

  it("name the app and verification of a message sealed with an unknown secret, or moved to another row", async () => {
    const { worker, lines, verificationId } = await setUp(accepting, {
      secrets: new CodeSecrets(["another-secret-0123456789abcdef"]),
    });
    await worker.runOnce();
    expect(linesNamed(lines, "message dropped")).toEqual([
      {
        level: "warn",
        message: "message dropped",
        fields: {
          messageId: expect.any(String),
          appId: "default",
          verificationId,
          error: "sealed with an unknown secret, or moved to another row",
        },
      },
    ]);
  });

  it("name the app and verification of a message expired before delivery, and of one whose code was canceled", async () => {
    const expired = await setUp(accepting);
    expired.clock.advanceSeconds(3_600);
    await expired.worker.runOnce();
    expect(linesNamed(expired.lines, "message dropped")[0]?.fields).toMatchObject({
      appId: "default",
      verificationId: expired.verificationId,
      error: "expired before delivery",
    });
    await server?.close();

    const canceled = await setUp(accepting, {
      codes: { get: async () => ({ status: "canceled" }) as CodeRecord },
    });
    canceled.clock.advanceSeconds(3);
    await canceled.worker.runOnce();
    expect(linesNamed(canceled.lines, "message dropped")[0]?.fields).toMatchObject({
      appId: "default",
      verificationId: canceled.verificationId,
      error: "code canceled",
    });
  });
});
