import type { AddressInfo, Socket } from "node:net";
import { SMTPServer } from "smtp-server";
import { afterEach, describe, expect, it } from "vitest";
import { renderedMessage } from "../../../../test/servers/rendered-message.js";
import { sendFailure } from "../../../../test/servers/send-failure.js";
import type { MessageSender } from "../../../core/ports.js";
import { createSmtpEmailSender } from "./smtp-email-sender.js";

interface SlowRelay {
  url: string;
  /** Message-IDs of the mails the relay accepted */
  mails: string[];
  close(): Promise<void>;
}

/**
 * A relay that delays its greeting (as anti-spam tarpits do), its answer to MAIL FROM and its
 * answer after DATA. The mail counts as accepted once its final "." arrived, whether or not the
 * client is still there for the answer: a real relay has queued it by then.
 */
async function startSlowRelay(delays: {
  greetingMs: number;
  mailFromMs?: number;
  dataMs?: number;
  /** close the connection once the mail arrived, without answering */
  dropAfterData?: boolean;
  /** refuse the mail after its final dot with this reply, e.g. `[451, "Try again later"]` */
  refuseData?: [code: number, text: string];
}): Promise<SlowRelay> {
  const mails: string[] = [];
  const sockets = new Set<Socket>();
  const relay = new SMTPServer({
    authOptional: true,
    disabledCommands: ["STARTTLS"],
    onConnect: (_session, callback) => void setTimeout(() => callback(), delays.greetingMs),
    onMailFrom: (_address, _session, callback) => void setTimeout(() => callback(), delays.mailFromMs ?? 0),
    onData(stream, _session, callback) {
      let raw = "";
      stream.on("data", (chunk: Buffer) => {
        raw += chunk.toString();
      });
      stream.on("end", () => {
        mails.push(/^Message-ID: (.*)$/im.exec(raw)?.[1]?.trim() ?? "?");
        if (delays.dropAfterData) {
          for (const socket of sockets) socket.destroy();
          return;
        }
        const refusal = delays.refuseData;
        const answer = refusal
          ? () => callback(Object.assign(new Error(refusal[1]), { responseCode: refusal[0] }))
          : () => callback();
        setTimeout(answer, delays.dataMs ?? 0);
      });
    },
  });
  relay.server.on("connection", (socket: Socket) => sockets.add(socket));
  relay.on("error", () => {
    // a client closing its connection mid-command is what these tests are about
  });
  await new Promise<void>((resolve) => relay.listen(0, "127.0.0.1", () => resolve()));
  const { port } = relay.server.address() as AddressInfo;
  return {
    url: `smtp://127.0.0.1:${port}`,
    mails,
    close: () => new Promise<void>((resolve) => relay.close(() => resolve())),
  };
}

const email = renderedMessage({ channel: "email", to: "ada@example.com", messageId: "msg_slow" });

// The first two run on the sender's real timeouts (18 s from the hand-over): 12-22 s each.
describe("createSmtpEmailSender: a slow relay", () => {
  let relay: SlowRelay | undefined;
  let sender: MessageSender | undefined;

  afterEach(async () => {
    await sender?.close?.();
    await relay?.close();
    sender = undefined;
    relay = undefined;
  });

  // @see .scratch/providers/slow-vendor.test.ts (second test): the 10 s timer included opening
  // the connection; the try was recorded failed at 10 s, the relay got the mail at 12 s, and the
  // retry sent a second copy.
  it("reports a mail sent when the relay greets after 8 s and answers DATA 4 s later", async () => {
    relay = await startSlowRelay({ greetingMs: 8_000, dataMs: 4_000 });
    sender = createSmtpEmailSender({ url: relay.url, from: "no-reply@acme.example" });

    const receipt = await sender.send(email);

    expect(receipt.providerMessageId).toBe("<msg_slow@acme.example>");
    expect(relay.mails).toEqual(["<msg_slow@acme.example>"]);
  }, 25_000);

  it("closes the connection of a mail it gives up on, so the relay never gets it", async () => {
    // greeting 9.5 s + MAIL FROM 9.5 s: past the 18 s timeout, each wait within nodemailer's own
    relay = await startSlowRelay({ greetingMs: 9_500, mailFromMs: 9_500 });
    sender = createSmtpEmailSender({ url: relay.url, from: "no-reply@acme.example" });

    const started = Date.now();

    const failure = await sendFailure(sender.send(email));

    // past the time nodemailer would have finished the mail (19 s), had the connection stayed open
    await new Promise((resolve) => setTimeout(resolve, 21_000 - (Date.now() - started)));
    expect(relay.mails).toEqual([]);
    expect(failure.permanent).toBe(false);
    // nothing of the mail was written: clearly not sent, so it may be tried again
    expect(failure.unconfirmed).toBe(false);
    expect(failure.message).toContain("no answer within 18000 ms");
  }, 30_000);

  // Regression: a relay that took the whole mail and then hung (or closed the connection) before
  // its answer was a transient failure, so the outbox sent the mail again, through the same relay
  // or the next: a second copy of the code for every late answer. (These shorten the send's time.)
  it("leaves the send unconfirmed when the relay does not answer after the final dot", async () => {
    relay = await startSlowRelay({ greetingMs: 0, dataMs: 3_000 });
    sender = createSmtpEmailSender({ url: relay.url, from: "no-reply@acme.example", sendTimeoutMs: 1_000 });

    const failure = await sendFailure(sender.send(email));

    expect(relay.mails).toEqual(["<msg_slow@acme.example>"]);
    expect(failure.unconfirmed).toBe(true);
    expect(failure.message).toContain("no answer within 1000 ms");
  });

  it("leaves the send unconfirmed when the relay closes the connection after the final dot", async () => {
    relay = await startSlowRelay({ greetingMs: 0, dropAfterData: true });
    sender = createSmtpEmailSender({ url: relay.url, from: "no-reply@acme.example", sendTimeoutMs: 5_000 });

    const failure = await sendFailure(sender.send(email));

    expect(relay.mails).toEqual(["<msg_slow@acme.example>"]);
    expect(failure.unconfirmed).toBe(true);
  });

  // The relay answered after the final dot, refusing the mail: it said it did not take it, so the
  // try is retried and fails over (not unconfirmed), and a 554 there is no recipient's refusal.
  it.each([
    [451, "4.3.0 Try again later"],
    [554, "5.6.0 Message content rejected"],
  ] as const)(
    "fails transiently, as not sent, when the relay answers %i after the final dot",
    async (code, text) => {
      relay = await startSlowRelay({ greetingMs: 0, refuseData: [code, text] });
      sender = createSmtpEmailSender({ url: relay.url, from: "no-reply@acme.example", sendTimeoutMs: 5_000 });

      const failure = await sendFailure(sender.send(email));

      expect(relay.mails).toEqual(["<msg_slow@acme.example>"]);
      expect(failure.message).toContain(String(code));
      expect(failure.unconfirmed).toBe(false);
      expect(failure.permanent).toBe(false);
    },
  );

  it("fails transiently, as not sent, when the relay hangs before DATA", async () => {
    relay = await startSlowRelay({ greetingMs: 0, mailFromMs: 3_000 });
    sender = createSmtpEmailSender({ url: relay.url, from: "no-reply@acme.example", sendTimeoutMs: 1_000 });

    const failure = await sendFailure(sender.send(email));

    expect(failure.unconfirmed).toBe(false);
    expect(failure.permanent).toBe(false);
  });
});
