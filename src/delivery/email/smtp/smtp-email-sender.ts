import { PassThrough, pipeline } from "node:stream";
import nodemailer from "nodemailer";
import type Mail from "nodemailer/lib/mailer/index.js";
import {
  type HandOver,
  type MessageSender,
  type RenderedMessage,
  SendFailure,
  type SendReceipt,
} from "../../../core/ports.js";
import { parseSmtpUrl } from "./smtp-url.js";

// Most relays connect in milliseconds; 10 s rides out a slow handshake but stops a send from
// hanging on a black-holed host, so the outbox worker can retry or fail over.
const SMTP_CONNECTION_TIMEOUT_MS = 10_000;
// A relay that accepts the socket but never greets is broken or overloaded; give up like on connect.
const SMTP_GREETING_TIMEOUT_MS = 10_000;
// One message, from the hand-over to nodemailer to the relay's answer after DATA: room for a
// pooled connection to open (a relay may delay its greeting for seconds against spam) and for a
// relay that scans the body. It must stay below the outbox worker's try timeout (20 s), so the
// sender, which knows how far the mail got, reports its outcome. When it runs out, the message's
// connection is closed (below), so the relay never gets a message we call not sent; a mail given
// up on after it was written whole is unconfirmed, and the longer the wait, the fewer are.
const SMTP_SEND_TIMEOUT_MS = 18_000;
// Inactivity limit per command, as long as the whole send may take: a relay quiet for longer
// after DATA than this would have its mail cut off unconfirmed before the send's own time is up.
const SMTP_SOCKET_TIMEOUT_MS = SMTP_SEND_TIMEOUT_MS;
// The mail option that carries a mail's "written whole" callback to the stream plugin below.
const ON_WRITTEN = "verifydOnWritten";
// A handful of reused connections absorbs bursts without looking like a flood to the relay. The
// sender hands nodemailer no more messages than this at once: the rest wait in the sender, where
// the time does not count as the relay's and a message can still be withdrawn (nodemailer's own
// queue sends whatever it holds, even after its caller gave up).
const SMTP_MAX_CONNECTIONS = 5;
// One requeue covers a pooled connection the relay closed while idle; beyond that the outbox
// worker owns retries (with its own backoff and failover), so the pool must not retry for it.
const SMTP_MAX_REQUEUES = 1;

export interface SmtpEmailOptions {
  /**
   * `smtp://user:pass@host:port` (STARTTLS when the relay offers it; add `?requireTLS=true` to
   * insist) or `smtps://…` (TLS from the first byte). Credentials are percent-encoded.
   */
  url: string;
  /** the From header and envelope sender, e.g. `"Acme" <no-reply@acme.example>` */
  from: string;
  replyTo?: string;
  /** reuse connections across sends (default true) */
  pool?: boolean;
  /** TLS settings for relays with a private CA or a self-signed certificate */
  tls?: { rejectUnauthorized?: boolean; ca?: string };
  /** provider id in delivery records (default "smtp") */
  id?: string;
  /** how long a mail may take from its hand-over (default 18000; tests shorten it) */
  sendTimeoutMs?: number;
}

/**
 * An email sender speaking SMTP through nodemailer. The Message-ID is derived from the outbox
 * message id, so a retried send is recognisable as the same message in the relay's logs and the
 * recipient's mailbox. Only a refusal of the recipient's address at RCPT TO (see
 * `isRecipientRefusal`) is a permanent failure; everything else, the relay refusing verifyd
 * included, may succeed later or through another provider. Messages
 * beyond the pool's connections wait in the sender (`MessageSender.queuesMessages`), each timed from its
 * hand-over to nodemailer, and stopped (its connection closed) when it runs out of time.
 */
export function createSmtpEmailSender(options: SmtpEmailOptions): MessageSender {
  const id = options.id ?? "smtp";
  const transporter = nodemailer.createTransport({
    ...parseSmtpUrl(options.url),
    pool: options.pool ?? true,
    maxConnections: SMTP_MAX_CONNECTIONS,
    maxRequeues: SMTP_MAX_REQUEUES,
    connectionTimeout: SMTP_CONNECTION_TIMEOUT_MS,
    greetingTimeout: SMTP_GREETING_TIMEOUT_MS,
    socketTimeout: SMTP_SOCKET_TIMEOUT_MS,
    ...(options.tls ? { tls: options.tls } : {}),
  });
  const messageIdDomain = domainOf(options.from);
  const slots = createSlots(SMTP_MAX_CONNECTIONS);
  const sendTimeoutMs = options.sendTimeoutMs ?? SMTP_SEND_TIMEOUT_MS;
  // Tells each mail when its last byte went to the relay: its stream ends as the DATA stream,
  // which appends the final ".", has read it all. From then on the relay may deliver it.
  transporter.use("stream", (mail, done) => {
    const onWritten = (mail.data as Record<string, unknown>)[ON_WRITTEN];
    if (typeof onWritten === "function") {
      mail.message.processFunc((input) => {
        const output = new PassThrough();
        output.once("end", () => onWritten());
        return pipeline(input, output, () => {});
      });
    }
    done();
  });

  return {
    id,
    channel: "email",
    queuesMessages: true,
    async send(message: RenderedMessage, handOver?: HandOver): Promise<SendReceipt> {
      const messageId = `<${message.messageId}@${messageIdDomain}>`;
      await slots.take();
      if (handOver && !handOver()) {
        slots.give();
        throw new SendFailure(`${id}: withdrawn while waiting for a free connection`);
      }
      // Giving up must stop the message, not just our wait for it: nodemailer would go on and
      // deliver it (through a slow greeting, say) after the try was recorded failed, and the retry
      // would send a second copy. Aborting removes the message from nodemailer's queue, or closes
      // the connection it is on before more of it is written; a relay discards a message whose
      // final "." it never got. Only a message whose "." was written before the timeout, and whose
      // answer is what is late, may still be delivered (RFC 1047): no client can take that back,
      // so such a send fails unconfirmed, and is not retried.
      // Timing only the part after the connection is ready was the other choice; it leaves the
      // whole send unbounded and still needs the abort.
      const abort = new AbortController();
      let written = false;
      const mail: Mail.Options & { [ON_WRITTEN]: () => void } = {
        from: options.from,
        ...(options.replyTo ? { replyTo: options.replyTo } : {}),
        to: message.to,
        subject: message.subject,
        text: message.text,
        html: message.html ?? textToHtml(message.text),
        messageId,
        signal: abort.signal,
        [ON_WRITTEN]: () => {
          written = true;
        },
      };
      const sending = transporter.sendMail(mail);
      // The slot comes back when nodemailer is done with the message, not when our clock gives
      // up on it: nodemailer must never hold more messages than it has connections.
      sending.then(slots.give, slots.give);
      const timeout = setTimeout(
        () => abort.abort(new Error(`no answer within ${sendTimeoutMs} ms`)),
        sendTimeoutMs,
      );
      try {
        await sending;
      } catch (error) {
        const reason = abort.signal.aborted ? abort.signal.reason : error;
        throw new SendFailure(`${id}: ${reason instanceof Error ? reason.message : String(reason)}`, {
          permanent: isRecipientRefusal(error),
          // The whole mail went out and no reply came (our timeout, nodemailer's, or the relay
          // closing): the relay may have queued it. A reply after DATA is a clear refusal.
          unconfirmed: written && !hasReplyCode(error),
          cause: error,
        });
      } finally {
        clearTimeout(timeout);
      }
      return { providerMessageId: messageId };
    },
    async close(): Promise<void> {
      transporter.close();
    },
  };
}

function hasReplyCode(error: unknown): boolean {
  return typeof (error as { responseCode?: unknown } | null)?.responseCode === "number";
}

/** A counting semaphore: `take` waits for a free slot, first come first served. */
function createSlots(count: number): { take(): Promise<void>; give(): void } {
  let free = count;
  const waiting: (() => void)[] = [];
  return {
    take() {
      if (free > 0) {
        free -= 1;
        return Promise.resolve();
      }
      return new Promise<void>((resolve) => waiting.push(resolve));
    },
    give() {
      const next = waiting.shift();
      if (next) next();
      else free += 1;
    },
  };
}

// The basic codes a relay refuses a recipient's address with: no such mailbox (550), not local
// (551), a malformed address (553). The same codes also carry refusals of verifyd itself.
const RECIPIENT_REFUSAL_CODES = new Set([550, 551, 553]);
// Enhanced status codes (RFC 3463) that say the recipient's address or mailbox is at fault: bad
// destination mailbox, system or syntax (5.1.1-5.1.3), ambiguous (5.1.4), moved (5.1.6), a domain
// that takes no mail (5.1.10, RFC 7505) and a disabled mailbox (5.2.1). The other 5.1 codes name
// the sender's address (5.1.7, 5.1.8), and 5.7 is policy.
const RECIPIENT_STATUSES = new Set(["5.1.1", "5.1.2", "5.1.3", "5.1.4", "5.1.6", "5.1.10", "5.2.1"]);
// Without an enhanced status, a refusal is the recipient's only when its text says the mailbox is
// at fault. Exim's `550 relay not permitted`, qmail's `553 sorry, that domain isn't in my list of
// allowed rcpthosts`, and authentication, access or policy refusals are the relay refusing verifyd.
const MAILBOX_AT_FAULT =
  /\b(user (unknown|not found|not local|doesn'?t exist|does not exist)|unknown (user|recipient|mailbox)|no such (user|mailbox|recipient|address)|mailbox (unavailable|not found|doesn'?t exist|does not exist|disabled|is disabled)|(recipient|address) (unknown|not found|does not exist|doesn'?t exist)|unrouteable address|invalid (recipient|mailbox|address)|bad (recipient|destination) (address|mailbox))/i;
// qmail and others give the enhanced status in the text, as `(#5.7.1)`.
const ENHANCED_STATUS = /^\d{3}[ -](\d\.\d{1,3}\.\d{1,3})(?![\d.])|\(#(\d\.\d{1,3}\.\d{1,3})\)/;

/**
 * True when the relay refused the recipient's address itself, which no retry and no other relay
 * changes. nodemailer marks the reply with the command it answered, its code and its text. A
 * refusal at RCPT TO is more often the relay refusing verifyd (Postfix reports relay access,
 * client, HELO and sender restrictions there: `554 5.7.1 <addr>: Relay access denied`), which is
 * transient: the next provider is tried and the breaker counts it. So only 550, 551 and 553 are
 * the recipient's, and only with a recipient status, or without an enhanced status when the text
 * says the mailbox is at fault (Exim and qmail give none when they refuse to relay).
 */
function isRecipientRefusal(error: unknown): boolean {
  if (typeof error !== "object" || error === null) return false;
  const { command, responseCode, response } = error as {
    command?: unknown;
    responseCode?: unknown;
    response?: unknown;
  };
  if (command !== "RCPT TO" || typeof responseCode !== "number") return false;
  if (!RECIPIENT_REFUSAL_CODES.has(responseCode)) return false;
  const text = typeof response === "string" ? response : "";
  const found = ENHANCED_STATUS.exec(text);
  const enhanced = found?.[1] ?? found?.[2];
  return enhanced === undefined ? MAILBOX_AT_FAULT.test(text) : RECIPIENT_STATUSES.has(enhanced);
}

function domainOf(from: string): string {
  const address = /<([^>]+)>/.exec(from)?.[1] ?? from;
  const at = address.lastIndexOf("@");
  return at >= 0 ? address.slice(at + 1).trim() : "verifyd.invalid";
}

function textToHtml(text: string): string {
  const escaped = text
    .replaceAll("&", "&amp;")
    .replaceAll("<", "&lt;")
    .replaceAll(">", "&gt;")
    .replaceAll('"', "&quot;")
    .replaceAll("'", "&#39;")
    .replaceAll("\n", "<br>\n");
  return `<!doctype html>\n<html><body style="font-family: sans-serif">${escaped}</body></html>\n`;
}
