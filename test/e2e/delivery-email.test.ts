import { simpleParser } from "mailparser";
import { afterEach, describe, expect, it } from "vitest";
import { createTestServer, type TestServer } from "../harness.js";
import { type SmtpRecorder, startSmtpRecorder } from "../servers/smtp-recorder.js";
import { deliveriesOf } from "./verification-view.js";

/**
 * Issue 7: VERIFYD_SMTP_URL + VERIFYD_EMAIL_FROM alone switch email to SMTP. The whole path is
 * real: config loading, the outbox worker, nodemailer's pool, and an SMTP server on loopback
 * (smtp-server) whose received message is parsed with mailparser.
 */

const FROM = '"Shop" <codes@shop.example>';
const API_KEY = "vk_delivery_email_test_key_0123456789";

let t: TestServer | undefined;
let smtp: SmtpRecorder | undefined;
afterEach(async () => {
  await t?.close();
  await smtp?.close();
  t = undefined;
  smtp = undefined;
});

async function start(
  env: Record<string, string> = {},
  recorder: Parameters<typeof startSmtpRecorder>[0] = {},
  configFile: Record<string, unknown> = {},
) {
  smtp = await startSmtpRecorder({ auth: { user: "relay", pass: "s3cret pass" }, ...recorder });
  t = await createTestServer({
    // no recording senders: the configuration alone decides where email goes
    devSender: true,
    env: { VERIFYD_SMTP_URL: smtp.url, VERIFYD_EMAIL_FROM: FROM, ...env },
    apps: [
      {
        id: "default",
        name: "Shop",
        apiKeys: [API_KEY],
        policy: { perIp: [] },
        abuse: { captcha: { native: "never" } },
      },
    ],
    configFile,
  });
  return { server: t, recorder: smtp };
}

async function send(
  server: TestServer,
  payload: Record<string, unknown>,
  headers: Record<string, string> = {},
) {
  return server.fastify.inject({
    method: "POST",
    url: "/v1/verifications",
    headers: { authorization: `Bearer ${API_KEY}`, ...headers },
    payload,
  });
}

const deliveries = (server: TestServer, id: string) => deliveriesOf(server, id, API_KEY);

describe("email over SMTP, end to end", () => {
  it("delivers the code to a real SMTP server, where it reads back and approves", async () => {
    const { server, recorder } = await start();
    const sent = await send(server, { channel: "email", to: "ann@example.com", purpose: "sign_in" });
    expect(sent.statusCode).toBe(201);
    const { id } = sent.json();
    // a 2xx means queued, never sent: no SMTP session was opened on the request path
    expect(recorder.messages).toHaveLength(0);

    await server.deliverAll();
    expect(recorder.messages).toHaveLength(1);
    const [mail] = recorder.messages;
    expect(mail).toMatchObject({ from: "codes@shop.example", to: ["ann@example.com"], user: "relay" });

    const parsed = await simpleParser(mail?.raw ?? Buffer.alloc(0));
    expect(parsed.subject).toBe("Your Shop sign-in code");
    expect(parsed.from?.text).toBe('"Shop" <codes@shop.example>');
    expect(parsed.messageId).toMatch(/^<msg_[^@]+@shop\.example>$/);
    const code = /\b(\d{6})\b/.exec(parsed.text ?? "")?.[1];
    expect(code).toBeDefined();
    // the HTML part carries the same code
    expect(String(parsed.html)).toContain(code);

    const view = await server.fastify.inject({
      method: "GET",
      url: `/v1/verifications/${id}`,
      headers: { authorization: `Bearer ${API_KEY}` },
    });
    // the provider's message id is the Message-ID the relay received
    expect(view.json().deliveries).toEqual([
      { provider: "smtp", status: "sent", at: expect.any(String), provider_message_id: parsed.messageId },
    ]);

    const checked = await server.fastify.inject({
      method: "POST",
      url: "/v1/verifications/check",
      headers: { authorization: `Bearer ${API_KEY}` },
      payload: { id, code },
    });
    expect(checked.statusCode).toBe(200);
    expect(checked.json().status).toBe("approved");
  });

  it("marks a recipient the relay refuses (550 at RCPT) failed at once, without retrying", async () => {
    const { server, recorder } = await start({}, { rejectRecipients: ["nobody@example.com"] });
    const sent = await send(server, { channel: "email", to: "nobody@example.com", purpose: "sign_in" });
    await server.deliverAll();
    server.clock.advanceSeconds(120);
    await server.deliverAll();
    expect(recorder.messages).toHaveLength(0);
    expect(await deliveries(server, sent.json().id)).toEqual([
      { provider: "smtp", status: "failed", at: expect.any(String), error: expect.stringMatching(/550/) },
    ]);
  });

  it("in production, sends email over SMTP and refuses the channel that has no provider", async () => {
    const { server, recorder } = await start({
      VERIFYD_MODE: "production",
      VERIFYD_SECRET: "production-secret-0123456789",
    });
    const sms = await send(server, { channel: "sms", to: "+8613800138000", purpose: "sign_in" });
    expect(sms.statusCode).toBe(403);
    expect(sms.headers["content-type"]).toContain("application/problem+json");
    expect(sms.json().code).toBe("CHANNEL_DISABLED");

    const email = await send(server, { channel: "email", to: "bob@example.com", purpose: "sign_up" });
    expect(email.statusCode).toBe(201);
    await server.deliverAll();
    expect(recorder.messages.map((mail) => mail.to)).toEqual([["bob@example.com"]]);
  });

  // Regression: a burst went to nodemailer's 5-connection pool whole; the messages waiting there
  // passed the worker's try timeout, were retried and still went out (twice), and the timeouts
  // opened the breaker of a healthy relay. @see issue 7
  it("sends a burst larger than the pool once each, none timed out while waiting for a connection", async () => {
    // five rounds of five at 250 ms each: the last mails wait in the sender ~1 s before their turn
    const { server, recorder } = await start({}, { dataDelayMs: 250 });
    const burst = 25;
    const ids: string[] = [];
    for (let index = 0; index < burst; index++) {
      const sent = await send(server, {
        channel: "email",
        to: `user${index}@example.com`,
        purpose: "sign_in",
      });
      expect(sent.statusCode).toBe(201);
      ids.push(sent.json().id);
    }

    await server.deliverAll();
    // whatever was marked for a retry is due now, and copies nodemailer still held have gone out
    server.clock.advanceSeconds(60);
    await server.deliverAll();
    await new Promise((resolve) => setTimeout(resolve, 300));

    const perRecipient = new Map<string, number>();
    for (const mail of recorder.messages) {
      const to = mail.to.join();
      perRecipient.set(to, (perRecipient.get(to) ?? 0) + 1);
    }
    expect(perRecipient.size).toBe(burst);
    expect(Math.max(...perRecipient.values())).toBe(1);
    expect(recorder.mostInData).toBeLessThanOrEqual(5);
    for (const id of ids) {
      expect((await deliveries(server, id)).map((delivery) => delivery.status)).toEqual(["sent"]);
    }
  });
});

// Regression: a relay refusing verifyd at RCPT TO (`554 5.7.1 Relay access denied`, as Postfix
// also reports its client, HELO and sender restrictions) was taken as the recipient's fault: the
// mail failed at once, the next email provider was never tried, and the relay's breaker never opened.
describe("an SMTP relay refusing verifyd at RCPT TO", () => {
  let backup: SmtpRecorder | undefined;
  afterEach(async () => {
    await backup?.close();
    backup = undefined;
  });

  it("fails over to the next relay, and the refusing relay's breaker opens", async () => {
    backup = await startSmtpRecorder();
    const { server, recorder } = await start(
      {},
      { rejectRecipients: true, rejectReply: "554 5.7.1 <ann@example.com>: Relay access denied" },
      {
        providers: [{ id: "backup", type: "smtp", url: backup.url, from: FROM }],
        routing: { email: ["smtp", "backup"] },
        delivery: { triesPerProvider: 1, breaker: { failureThreshold: 2, coolDownSeconds: 30 } },
      },
    );
    const ids: string[] = [];
    for (const to of ["ann@example.com", "bob@example.com", "cat@example.com"]) {
      const sent = await send(server, { channel: "email", to, purpose: "sign_in" });
      ids.push(sent.json().id);
      await server.deliverAll();
    }

    expect(recorder.messages).toHaveLength(0);
    expect(backup.messages.map((mail) => mail.to)).toEqual([
      ["ann@example.com"],
      ["bob@example.com"],
      ["cat@example.com"],
    ]);
    const tried = [];
    for (const id of ids) {
      tried.push((await deliveries(server, id)).map(({ provider, status }) => ({ provider, status })));
    }
    const refused = { provider: "smtp", status: "failed" };
    const sent = { provider: "backup", status: "sent" };
    // the second refusal opens the breaker: the third mail skips the refusing relay
    expect(tried).toEqual([[refused, sent], [refused, sent], [sent]]);
  });
});
