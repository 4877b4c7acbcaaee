import { simpleParser } from "mailparser";
import { afterEach, describe, expect, it } from "vitest";
import { closedPort } from "../../../../test/servers/closed-port.js";
import { renderedMessage } from "../../../../test/servers/rendered-message.js";
import { sendFailure } from "../../../../test/servers/send-failure.js";
import { type SmtpRecorder, startSmtpRecorder } from "../../../../test/servers/smtp-recorder.js";
import type { MessageSender } from "../../../core/ports.js";
import { ProviderUrlError } from "../../provider-url.js";
import { createSmtpEmailSender } from "./smtp-email-sender.js";

const email = (overrides = {}) =>
  renderedMessage({
    channel: "email",
    to: "ada@example.com",
    subject: "Your sign-in code",
    text: "Your code is 042917.\nIt expires in 10 minutes. <Do not share it>",
    ...overrides,
  });

describe("createSmtpEmailSender", () => {
  let recorder: SmtpRecorder | undefined;
  let sender: MessageSender | undefined;

  afterEach(async () => {
    await sender?.close?.();
    await recorder?.close();
    sender = undefined;
    recorder = undefined;
  });

  it("delivers text and escaped HTML with From, Reply-To and a Message-ID derived from the message id", async () => {
    recorder = await startSmtpRecorder({ auth: { user: "mailer@acme.example", pass: "s3cret:/@" } });
    sender = createSmtpEmailSender({
      url: recorder.url,
      from: '"Acme" <no-reply@acme.example>',
      replyTo: "support@acme.example",
    });

    const receipt = await sender.send(email());

    expect(recorder.messages).toHaveLength(1);
    const [recorded] = recorder.messages;
    expect(recorded?.user).toBe("mailer@acme.example");
    expect(recorded?.from).toBe("no-reply@acme.example");
    expect(recorded?.to).toEqual(["ada@example.com"]);
    const parsed = await simpleParser(recorded?.raw ?? Buffer.alloc(0));
    expect(/code is (\d{6})/.exec(parsed.text ?? "")?.[1]).toBe("042917");
    expect(parsed.html).toContain("&lt;Do not share it&gt;");
    expect(parsed.html).not.toContain("<Do not share it>");
    expect(parsed.from?.value[0]).toMatchObject({ name: "Acme", address: "no-reply@acme.example" });
    expect(parsed.replyTo?.value[0]?.address).toBe("support@acme.example");
    expect(parsed.subject).toBe("Your sign-in code");
    expect(parsed.messageId).toBe("<msg_01HZX3T9Q8P7RY3V2W1K0M9N8B@acme.example>");
    expect(receipt.providerMessageId).toBe(parsed.messageId);
  });

  it("logs in with the decoded user and password of a URL that percent-encodes them", async () => {
    recorder = await startSmtpRecorder({
      auth: { user: "mailer@acme.example", pass: "Tr0ub4dor#3 50%off?/" },
    });
    expect(recorder.url).toContain(":Tr0ub4dor%233%2050%25off%3F%2F@");
    sender = createSmtpEmailSender({ url: recorder.url, from: "no-reply@acme.example" });

    await sender.send(email());

    expect(recorder.messages.map((message) => message.user)).toEqual(["mailer@acme.example"]);
  });

  // @see .scratch/ops-review/bad-smtp-url-prod.mjs: Node's "Invalid URL" error carried the URL.
  it.each(["smtp://mailer:Tr0ub4dor#3@smtp.example.com:587", "smtp://mailer:50%off@mail.example:587"])(
    "refuses %s when created, with an error that does not carry it",
    (url) => {
      let thrown: unknown;
      try {
        createSmtpEmailSender({ url, from: "no-reply@acme.example" });
      } catch (error) {
        thrown = error;
      }
      expect(thrown).toBeInstanceOf(ProviderUrlError);
      expect(JSON.stringify({ ...(thrown as object), message: (thrown as Error).message })).not.toMatch(
        /Tr0ub4dor|50%off|mailer/,
      );
    },
  );

  it("sends the template's own HTML when the message has one", async () => {
    recorder = await startSmtpRecorder();
    sender = createSmtpEmailSender({ url: recorder.url, from: "no-reply@acme.example" });

    await sender.send(email({ html: "<p>Code: <b>042917</b></p>" }));

    const parsed = await simpleParser(recorder.messages[0]?.raw ?? Buffer.alloc(0));
    expect(parsed.html).toContain("<p>Code: <b>042917</b></p>");
  });

  it("reuses one pooled connection for consecutive sends", async () => {
    recorder = await startSmtpRecorder();
    sender = createSmtpEmailSender({ url: recorder.url, from: "no-reply@acme.example" });

    await sender.send(email({ messageId: "m1" }));
    await sender.send(email({ messageId: "m2" }));
    await sender.send(email({ messageId: "m3" }));

    expect(recorder.messages).toHaveLength(3);
    expect(recorder.connections()).toBe(1);
  });

  // Regression: nodemailer was handed every message at once, and sent the ones waiting in its
  // pool even after the caller had given up on them. @see issue 7
  it("hands nodemailer one message per connection at a time, and never sends one withdrawn at its hand-over", async () => {
    recorder = await startSmtpRecorder({ dataDelayMs: 100 });
    const queueing = createSmtpEmailSender({ url: recorder.url, from: "no-reply@acme.example" });
    sender = queueing;
    const handedOver: string[] = [];

    const sends = ["m0", "m1", "m2", "m3", "m4", "m5", "withdrawn"].map((messageId) =>
      queueing.send(email({ messageId }), () => {
        handedOver.push(messageId);
        return messageId !== "withdrawn";
      }),
    );
    await new Promise((resolve) => setImmediate(resolve));
    // the pool's five connections are busy: the rest wait in the sender, not in nodemailer
    expect(handedOver).toEqual(["m0", "m1", "m2", "m3", "m4"]);

    const outcomes = await Promise.allSettled(sends);
    expect(outcomes.map((outcome) => outcome.status)).toEqual([...Array(6).fill("fulfilled"), "rejected"]);
    expect(handedOver).toHaveLength(7);
    expect(recorder.mostInData).toBeLessThanOrEqual(5);
    const sent = await Promise.all(recorder.messages.map((mail) => simpleParser(mail.raw)));
    expect(sent.map((mail) => mail.messageId).sort()).toEqual(
      ["m0", "m1", "m2", "m3", "m4", "m5"].map((id) => `<${id}@acme.example>`),
    );
  });

  it("speaks TLS from the first byte for smtps:// urls", async () => {
    recorder = await startSmtpRecorder({ secure: true });
    sender = createSmtpEmailSender({
      url: recorder.url,
      from: "no-reply@acme.example",
      // smtp-server's bundled certificate is self-signed
      tls: { rejectUnauthorized: false },
    });

    await sender.send(email());

    expect(recorder.url.startsWith("smtps://")).toBe(true);
    expect(recorder.messages).toHaveLength(1);
  });

  it("fails permanently when the relay refuses the recipient with 550", async () => {
    recorder = await startSmtpRecorder({ rejectRecipients: ["gone@example.com"] });
    sender = createSmtpEmailSender({ url: recorder.url, from: "no-reply@acme.example" });

    const failure = await sendFailure(sender.send(email({ to: "gone@example.com" })));

    expect(failure.permanent).toBe(true);
    expect(failure.message).toContain("550");
    expect(recorder.messages).toHaveLength(0);
  });

  // Regression: any 5xx at RCPT TO was taken as the recipient's fault, so a relay refusing verifyd
  // (`554 5.7.1 Relay access denied`, Postfix's client, HELO and sender restrictions) failed every
  // mail at once, never tried the next provider, and its breaker never opened.
  it.each([
    ["554 5.7.1 <ada@example.com>: Relay access denied", false],
    ["550 5.7.1 Client host rejected: cannot find your hostname", false],
    ["550 5.1.8 <no-reply@acme.example>: Sender address rejected: Domain not found", false],
    ["554 Transaction failed", false],
    ["552 5.2.2 Mailbox full", false],
    ["550 5.1.1 <ada@example.com>: Recipient address rejected: User unknown", true],
    ["553 5.1.3 Bad recipient address syntax", true],
    ["551 User not local; please try <ada@elsewhere.example>", true],
    ["550 5.2.1 The email account that you tried to reach is disabled", true],
    // Regression: without an enhanced status every 550/553 was the recipient's, so Exim and qmail
    // refusing to relay for verifyd failed each mail for good, with no failover and no breaker.
    ["550 relay not permitted", false],
    ["553 sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)", false],
    ["553 sorry, that domain isn't in my list of allowed rcpthosts", false],
    ["550 Authentication required", false],
    ["550 Access denied", false],
    ["553 Rejected by policy", false],
    ["550 No such user here", true],
    ["550 unrouteable address", true],
    ["550 Requested action not taken: mailbox unavailable", true],
    ["553 sorry, no mailbox here by that name. (#5.1.1)", true],
    ["550 User unknown in virtual mailbox table", true],
  ])("takes the relay's %j at RCPT TO as permanent=%s", async (reply, permanent) => {
    recorder = await startSmtpRecorder({ rejectRecipients: true, rejectReply: reply });
    sender = createSmtpEmailSender({ url: recorder.url, from: "no-reply@acme.example" });

    const failure = await sendFailure(sender.send(email()));

    expect(failure.message).toContain(reply.slice(0, 3));
    expect(failure.permanent).toBe(permanent);
  });

  it("fails transiently when the relay is down", async () => {
    sender = createSmtpEmailSender({
      url: `smtp://127.0.0.1:${await closedPort()}`,
      from: "no-reply@acme.example",
    });

    const failure = await sendFailure(sender.send(email()));

    expect(failure.permanent).toBe(false);
  });

  it("fails transiently when the relay drops the connection", async () => {
    recorder = await startSmtpRecorder({ dropConnections: true });
    sender = createSmtpEmailSender({ url: recorder.url, from: "no-reply@acme.example" });

    const failure = await sendFailure(sender.send(email()));

    expect(failure.permanent).toBe(false);
    expect(failure.unconfirmed).toBe(false);
  });

  it("fails transiently when the login is refused", async () => {
    recorder = await startSmtpRecorder({ auth: { user: "mailer", pass: "right" } });
    const wrong = recorder.url.replace("mailer:right@", "mailer:wrong@");
    sender = createSmtpEmailSender({ url: wrong, from: "no-reply@acme.example" });

    const failure = await sendFailure(sender.send(email()));

    expect(failure.permanent).toBe(false);
    expect(recorder.messages).toHaveLength(0);
  });
});
