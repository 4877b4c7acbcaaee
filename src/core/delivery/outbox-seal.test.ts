import { afterEach, describe, expect, it } from "vitest";
import { createTestServer, type TestServer } from "../../../test/harness.js";
import type { MessageSender, RenderedMessage } from "../ports.js";
import { CodeSecrets } from "../secrets.js";
import { createOutboxWorker } from "./outbox-worker.js";

// Whoever can write the database but does not hold the secret (a leaked read-write credential, an
// injection elsewhere) must not be able to send someone's queued code to a recipient of their own:
// the seal is bound to its row's recipient, app, verification and purpose.

const SECRET = "outbox-seal-secret-0123456789abcdef";

let server: TestServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

/** Queues one SMS to the victim on a real SQLite store; `edit` changes its outbox row before delivery. */
async function deliverAfter(edit: string | null): Promise<{ sent: RenderedMessage[]; status: unknown }> {
  server = await createTestServer({ env: { VERIFYD_SECRET: SECRET } });
  const app = await server.engine.apps.byId("default");
  if (!app) throw new Error("the app default is missing");
  await server.engine.sendCode({
    app,
    channel: "sms",
    to: "+8613800138000",
    purpose: "sign_in",
    rule: "any",
  });
  const db = server.server.backend.db;
  if (edit) db.prepare(edit).run();
  const sent: RenderedMessage[] = [];
  const recording: MessageSender = {
    id: "recording",
    channel: "sms",
    send: async (message) => {
      sent.push(message);
      return { providerMessageId: "p-1" };
    },
  };
  const silent = { debug() {}, info() {}, warn() {}, error() {} };
  const worker = createOutboxWorker({
    outbox: server.server.backend.outbox,
    apps: server.engine.apps,
    secrets: new CodeSecrets([SECRET]),
    clock: server.clock,
    logger: silent,
    route: () => [recording],
    triesPerProvider: 1,
  });
  await worker.runOnce();
  const { status } = db.prepare("SELECT status FROM outbox").get() as { status: unknown };
  return { sent, status };
}

describe("a queued code's seal", () => {
  it("delivers the code to the recipient it was sealed for", async () => {
    const { sent, status } = await deliverAfter(null);
    expect(sent.map((message) => message.to)).toEqual(["+8613800138000"]);
    expect(status).toBe("sent");
  });

  it("does not open once its row's recipient is edited: nothing is sent", async () => {
    const { sent, status } = await deliverAfter("UPDATE outbox SET recipient = '+8613900139000'");
    expect(sent).toEqual([]);
    expect(status).toBe("failed");
  });

  it("does not open once its row's purpose is edited: nothing is sent", async () => {
    const { sent, status } = await deliverAfter("UPDATE outbox SET purpose = 'reset_password'");
    expect(sent).toEqual([]);
    expect(status).toBe("failed");
  });
});
