import smpp from "smpp";
import {
  type Logger,
  type MessageSender,
  type RenderedMessage,
  SendFailure,
  type SendReceipt,
} from "../../../core/ports.js";
import { parseDeliveryReceipt, type SmppReceipt } from "./smpp-delivery-receipt.js";
import { segmentText } from "./smpp-segments.js";
import { parseSmppUrl } from "./smpp-url.js";

export type { SmppReceipt } from "./smpp-delivery-receipt.js";

// SMSCs answer binds and enquire_link within milliseconds; 10 s without a response means the link
// is dead or the SMSC is stuck. A submit_sm waits for its answer as long as the send's budget
// allows instead: one written and left unanswered may have been taken, so it ends the send
// unconfirmed (never retried), and the longer the wait, the fewer sends end that way.
const SMPP_RESPONSE_TIMEOUT_MS = 10_000;
// Covers TCP connect, TLS and bind_transceiver_resp; a black-holed host would otherwise leave the
// sender "connecting" for the OS's connect timeout (minutes).
const SMPP_BIND_TIMEOUT_MS = 10_000;
// Most SMSCs drop sessions idle for 60 s or more; 30 s keeps the link alive and notices a dead one.
const SMPP_ENQUIRE_LINK_INTERVAL_SECONDS = 30;
// Backoff after a dropped link or refused bind: quick first retry, capped so a long outage costs
// one attempt a minute instead of hammering the SMSC (which may lock the account after many binds).
const SMPP_RECONNECT_DELAY_MS = 1_000;
const SMPP_MAX_RECONNECT_DELAY_MS = 60_000;
// unbind is a courtesy on shutdown; do not let an unresponsive SMSC delay it.
const SMPP_UNBIND_TIMEOUT_MS = 2_000;
// SMSCs allow few submit_sm awaiting their response per session (5 to 10 is usual) and refuse the
// rest with ESME_RTHROTTLED; 10 fills a common window, and `submitWindow` fits a smaller one.
const SMPP_SUBMIT_WINDOW = 10;
// A send must end inside the outbox worker's try (20 s), or the worker gives it up while its parts
// still go out and the retry sends them again: every wait of a send (the bind, a place in the
// window, a throttled SMSC's pause) and every submit's wait for its answer ends by this long after
// the send began, and no submit starts with less than SMPP_LEAST_ANSWER_MS of it left.
const SMPP_SEND_BUDGET_MS = 18_000;
const SMPP_LEAST_ANSWER_MS = 1_000;
// ESME_RTHROTTLED and ESME_RMSGQFUL say "slow down", not "this message failed": the same part is
// submitted again after a pause that doubles up to the cap, within the send's budget. Failing
// the try instead would burn a try and a breaker count per refusal, and re-send the parts of a
// long text already accepted under a new concatenation reference (orphans, billed twice).
const SMPP_THROTTLE_PAUSE_MS = 200;
const SMPP_MAX_THROTTLE_PAUSE_MS = 1_000;

const INTERFACE_VERSION_3_4 = 0x34;
const TON_INTERNATIONAL = 1;
const TON_ALPHANUMERIC = 5;
const NPI_ISDN = 1;
const NPI_UNKNOWN = 0;
const ESM_CLASS_UDH_INDICATOR = 0x40;
const ESM_CLASS_MESSAGE_TYPE_MASK = 0x3c;
const ESM_CLASS_DELIVERY_RECEIPT = 0x04;

/**
 * Refusals of the destination itself (ESME_RINVDSTADR, ESME_RINVDSTTON, ESME_RINVDSTNPI); no retry
 * and no other route fixes them. Throttling, queue-full and system errors stay transient.
 */
const PERMANENT_STATUSES = new Set([0x0b, 0x50, 0x51]);
/** ESME_RTHROTTLED and ESME_RMSGQFUL: the SMSC is busy, the same submit may succeed shortly. */
const TRY_AGAIN_SHORTLY_STATUSES = new Set([0x58, 0x14]);
const STATUS_NAMES = new Map(Object.entries(smpp.errors).map(([name, value]) => [value, name]));

export interface SmppSmsOptions {
  /** `smpp://host:port`, or `ssmpp://host:port` for TLS */
  url: string;
  systemId: string;
  password: string;
  systemType?: string;
  /** the sender: alphanumeric ("Acme"), a short code, or an international number ("+4915…") */
  sourceAddr: string;
  /** override the TON/NPI derived from `sourceAddr` when the SMSC expects other values */
  sourceAddrTon?: number;
  sourceAddrNpi?: number;
  /** how texts longer than one SMS travel: concatenated parts with a UDH (default) or one message_payload */
  longMessages?: "udh" | "payload";
  enquireLinkIntervalSeconds?: number;
  /** first reconnect delay, doubled after each failure up to `maxReconnectDelayMs` */
  reconnectDelayMs?: number;
  maxReconnectDelayMs?: number;
  /**
   * how long a bind or enquire_link waits for the SMSC's response (default 10000), and a submit_sm
   * when set (by default a submit waits for the rest of the send's budget)
   */
  responseTimeoutMs?: number;
  /** submit_sm awaiting their response at once on the session (default 10); later ones wait in the sender */
  submitWindow?: number;
  /** how long a send may take in all, waits and answers included (default 18000; tests shorten it) */
  sendBudgetMs?: number;
  /** final delivery outcomes reported by the SMSC (deliver_sm receipts) */
  onReceipt?: (receipt: SmppReceipt) => void | Promise<void>;
  /** told about link trouble (refused binds, dropped connections) and failing receipt handlers */
  logger?: Logger;
  /** provider id in delivery records (default "smpp") */
  id?: string;
}

interface PendingRequest {
  session: smpp.Session;
  /** settles the request failed, for `problem` */
  fail: (problem: string) => void;
}

/**
 * An SMS sender speaking SMPP 3.4 to an SMSC over one bound transceiver session. It connects on
 * creation, keeps the link alive with enquire_link, and reconnects with backoff when the link drops
 * or the bind is refused; sends made while no session is bound fail transiently at once (or after
 * the bind timeout while a connection attempt is under way), so they never hang. At most
 * `submitWindow` submit_sm await their response at once; a part the SMSC refuses as throttled or
 * queue-full is submitted again shortly, within the send, keeping its place in a long text. Delivery receipts
 * (deliver_sm or data_sm) are acknowledged and reported through `onReceipt`; any other request of
 * the SMSC is answered with generic_nack. `close()` unbinds.
 */
export function createSmppSmsSender(options: SmppSmsOptions): MessageSender {
  const id = options.id ?? "smpp";
  const target = parseSmppUrl(options.url);
  const responseTimeoutMs = options.responseTimeoutMs ?? SMPP_RESPONSE_TIMEOUT_MS;
  const submitAnswerMs = options.responseTimeoutMs ?? Number.POSITIVE_INFINITY;
  const enquireLinkMs = (options.enquireLinkIntervalSeconds ?? SMPP_ENQUIRE_LINK_INTERVAL_SECONDS) * 1000;
  const source = sourceAddress(options);
  const sendBudgetMs = options.sendBudgetMs ?? SMPP_SEND_BUDGET_MS;
  // (a budget shortened below a second, in tests, leaves submits a tenth of it)
  const leastAnswerMs = Math.min(SMPP_LEAST_ANSWER_MS, sendBudgetMs / 10);
  const windowSize = options.submitWindow ?? SMPP_SUBMIT_WINDOW;
  if (!(enquireLinkMs > 0)) throw new Error("SMPP enquireLinkIntervalSeconds must be a positive number");
  if (!(Number.isInteger(windowSize) && windowSize > 0))
    throw new Error("SMPP submitWindow must be a positive integer");
  // One window for the sender is one per session: the requests of a closed session fail at once
  // (onClosed), and so give their places back before the next session binds.
  const submitWindow = createWindow(windowSize);

  let session: smpp.Session | undefined;
  let bound = false;
  let closed = false;
  let lastProblem = "not connected yet";
  let failedAttempts = 0;
  let reconnectTimer: NodeJS.Timeout | undefined;
  let enquireTimer: NodeJS.Timeout | undefined;
  let concatenationReference = 0;
  const pending = new Set<PendingRequest>();
  const bindWaiters = new Set<{
    resolve: (session: smpp.Session) => void;
    reject: (failure: SendFailure) => void;
  }>();

  const transient = (problem: string) => new SendFailure(`${id}: ${problem}`);

  /**
   * Sends one request PDU; settles with its response, or fails on timeout or a dropped link. A
   * submit_sm that was written fails unconfirmed then (the SMSC may have taken it); one that could
   * not be written, and any other request, fails transiently.
   */
  function request(current: smpp.Session, pdu: smpp.PDU, timeoutMs: number): Promise<smpp.PDU> {
    const unconfirmed = pdu.command === "submit_sm";
    return new Promise((resolve, reject) => {
      const entry: PendingRequest = {
        session: current,
        fail: (problem) => {
          clearTimeout(timer);
          pending.delete(entry);
          reject(new SendFailure(`${id}: ${problem}`, { unconfirmed }));
        },
      };
      const timer = setTimeout(() => entry.fail(`no ${pdu.command}_resp within ${timeoutMs} ms`), timeoutMs);
      pending.add(entry);
      const written = current.send(pdu, (response) => {
        clearTimeout(timer);
        pending.delete(entry);
        resolve(response);
      });
      if (!written) {
        clearTimeout(timer);
        pending.delete(entry);
        reject(transient("the SMPP connection is not writable"));
      }
    });
  }

  function connect(): void {
    reconnectTimer = undefined;
    if (closed) return;
    const current = smpp.connect({ host: target.host, port: target.port, tls: target.tls });
    session = current;
    const bindTimer = setTimeout(() => {
      lastProblem = `not bound within ${SMPP_BIND_TIMEOUT_MS} ms`;
      current.destroy();
    }, SMPP_BIND_TIMEOUT_MS);

    current.on(target.tls ? "secureConnect" : "connect", () => {
      const bind = new smpp.PDU("bind_transceiver", {
        system_id: options.systemId,
        password: options.password,
        system_type: options.systemType ?? "",
        interface_version: INTERFACE_VERSION_3_4,
      });
      request(current, bind, responseTimeoutMs).then(
        (response) => {
          clearTimeout(bindTimer);
          if (response.command_status !== 0) {
            lastProblem = `bind refused (${statusName(response.command_status)})`;
            options.logger?.warn({ provider: id, status: response.command_status }, "SMPP bind refused");
            current.destroy();
            return;
          }
          onBound(current);
        },
        () => current.destroy(),
      );
    });
    // Every socket error is followed by "close", which does the reconnecting; without this
    // listener the EventEmitter would throw the error and crash the process.
    current.on("error", (error: Error) => {
      lastProblem = error.message;
      // A PDU that fails to parse leaves the byte stream unusable (and `smpp` stops reading), so
      // drop the link and reconnect; after a socket error this is a no-op.
      current.destroy();
    });
    current.on("close", () => {
      clearTimeout(bindTimer);
      onClosed(current);
    });
    current.on("pdu", (pdu: smpp.PDU) => {
      // Responses settle our own requests (the library matches them by sequence number).
      if (pdu.isResponse()) return;
      switch (pdu.command) {
        case "enquire_link":
          current.send(pdu.response());
          return;
        // An SMSC may report delivery with either (SMPP 3.4 sections 4.6 and 4.7).
        case "deliver_sm":
        case "data_sm":
          onSmscMessage(current, pdu);
          return;
        case "unbind":
          lastProblem = "the SMSC unbound the session";
          bound = false;
          current.send(pdu.response(), undefined, () => current.close());
          return;
        // Neither has a response in SMPP 3.4.
        case "alert_notification":
        case "outbind":
          return;
        default:
          // SMPP 3.4 obliges an answer to every request; one left unanswered holds the SMSC's
          // window, and some SMSCs drop the session over it. generic_nack says "not supported".
          current.send(
            new smpp.PDU("generic_nack", {
              sequence_number: pdu.sequence_number,
              command_status: smpp.errors.ESME_RINVCMDID,
            }),
          );
      }
    });
  }

  function onBound(current: smpp.Session): void {
    bound = true;
    failedAttempts = 0;
    lastProblem = "";
    enquireTimer = setInterval(() => {
      request(current, new smpp.PDU("enquire_link"), responseTimeoutMs).catch(() => {
        // An unanswered enquire_link is how a half-open link shows itself; drop it and reconnect.
        lastProblem = "enquire_link unanswered";
        current.destroy();
      });
    }, enquireLinkMs);
    for (const waiter of bindWaiters) waiter.resolve(current);
    bindWaiters.clear();
  }

  function onClosed(current: smpp.Session): void {
    if (session !== current) return;
    session = undefined;
    bound = false;
    clearInterval(enquireTimer);
    enquireTimer = undefined;
    const problem = lastProblem || "the SMPP connection closed";
    for (const entry of pending) if (entry.session === current) entry.fail(problem);
    for (const waiter of bindWaiters) waiter.reject(transient(problem));
    bindWaiters.clear();
    if (closed) return;
    const delay = Math.min(
      (options.reconnectDelayMs ?? SMPP_RECONNECT_DELAY_MS) * 2 ** failedAttempts,
      options.maxReconnectDelayMs ?? SMPP_MAX_RECONNECT_DELAY_MS,
    );
    failedAttempts += 1;
    // Jitter keeps several verifyd processes from reconnecting to a recovering SMSC in lockstep.
    reconnectTimer = setTimeout(connect, delay * (0.8 + Math.random() * 0.4));
  }

  /** A deliver_sm or data_sm from the SMSC: acknowledged, and read when it is a delivery receipt. */
  function onSmscMessage(current: smpp.Session, pdu: smpp.PDU): void {
    // Acknowledge first, whatever it holds: an SMSC redelivers an unacknowledged message.
    current.send(pdu.response());
    const esmClass = typeof pdu.esm_class === "number" ? pdu.esm_class : 0;
    if ((esmClass & ESM_CLASS_MESSAGE_TYPE_MASK) !== ESM_CLASS_DELIVERY_RECEIPT) return;
    const receipt = parseDeliveryReceipt({
      text: receiptText(pdu),
      ...(typeof pdu.receipted_message_id === "string"
        ? { receiptedMessageId: pdu.receipted_message_id }
        : {}),
      ...(typeof pdu.message_state === "number" ? { messageState: pdu.message_state } : {}),
    });
    if (!receipt || !options.onReceipt) return;
    const report = (error: unknown) =>
      options.logger?.error({ provider: id, err: error }, "SMPP receipt handler failed");
    try {
      Promise.resolve(options.onReceipt(receipt)).catch(report);
    } catch (error) {
      report(error);
    }
  }

  /**
   * The bound session, waiting for a connection attempt under way (until `untilMs`, at most the
   * bind timeout) but never for a backoff.
   */
  function boundSession(untilMs: number): Promise<smpp.Session> {
    if (closed) return Promise.reject(transient("the sender is closed"));
    if (bound && session) return Promise.resolve(session);
    if (!session) return Promise.reject(transient(`not bound to the SMSC (${lastProblem})`));
    return new Promise((resolve, reject) => {
      const waiter = {
        resolve: (current: smpp.Session) => {
          clearTimeout(timer);
          resolve(current);
        },
        reject: (failure: SendFailure) => {
          clearTimeout(timer);
          reject(failure);
        },
      };
      const waitMs = Math.max(0, Math.min(SMPP_BIND_TIMEOUT_MS, untilMs - Date.now()));
      const timer = setTimeout(() => {
        bindWaiters.delete(waiter);
        reject(transient(`not bound to the SMSC within ${waitMs} ms`));
      }, waitMs);
      bindWaiters.add(waiter);
    });
  }

  async function submit(message: RenderedMessage): Promise<SendReceipt> {
    const endMs = Date.now() + sendBudgetMs;
    await boundSession(endMs - leastAnswerMs);
    concatenationReference = (concatenationReference + 1) & 0xff;
    const segments = segmentText(message.text, options.longMessages ?? "udh", concatenationReference);
    const destination = destinationAddress(message.to);
    // The parts of a long text go out together, each through the window, as SMPP clients do: the
    // handset orders them by their UDH, and the text waits for one answer rather than one after
    // another (three parts from an SMSC answering in 7 s took 21 s, past the try). The send ends
    // when every part has its answer, so none is still in flight when the worker records it.
    const outcomes = await Promise.allSettled(
      segments.map((segment, index) => {
        // One receipt per text, asked for on its last part: a delivery record holds one provider
        // message id, and the last part carries the code's last line (the WebOTP "@domain #code").
        // Receipts for every part would each name a different id, and the first part's DELIVRD
        // would stand for a text whose end never arrived. Tracking every part instead would need
        // state kept across receipts (and lost on a restart) for the rare case where parts of one
        // text to one handset fare differently.
        const last = index === segments.length - 1;
        return submitPart(
          {
            source_addr_ton: source.ton,
            source_addr_npi: source.npi,
            source_addr: source.address,
            dest_addr_ton: destination.ton,
            dest_addr_npi: destination.npi,
            destination_addr: destination.address,
            esm_class: segment.hasUdh ? ESM_CLASS_UDH_INDICATOR : 0,
            registered_delivery: last ? 1 : 0,
            data_coding: segment.dataCoding,
            short_message: segment.shortMessage,
            ...(segment.messagePayload ? { message_payload: segment.messagePayload } : {}),
          },
          endMs,
        );
      }),
    );
    const failures = outcomes.flatMap((outcome) => (outcome.status === "rejected" ? [outcome.reason] : []));
    const [first] = failures;
    if (first !== undefined) {
      // Parts the SMSC took go out whatever became of the others, and a retry would send them
      // (and the code in them) again: the text counts as unconfirmed, like a part left unanswered.
      const unanswered = failures.find((failure) => failure instanceof SendFailure && failure.unconfirmed);
      if (unanswered !== undefined) throw unanswered;
      const accepted = outcomes.length - failures.length;
      if (accepted > 0) {
        const problem = first instanceof Error ? first.message : String(first);
        throw new SendFailure(`${problem} (${accepted} of ${outcomes.length} parts accepted)`, {
          unconfirmed: true,
          cause: first,
        });
      }
      throw first;
    }
    const last = outcomes.at(-1);
    const messageId = last?.status === "fulfilled" ? last.value.message_id : undefined;
    return typeof messageId === "string" && messageId !== "" ? { providerMessageId: messageId } : {};
  }

  /**
   * One submit_sm, accepted: it waits for a place in the window, and is submitted again (same
   * fields, so a part keeps its concatenation reference) while the SMSC answers "try again
   * shortly" and the send's budget allows. The place is held through those pauses, so a throttled
   * SMSC sees fewer submits until it accepts again.
   */
  async function submitPart(fields: smpp.PduFields, endMs: number): Promise<smpp.PDU> {
    if (!(await submitWindow.enter(endMs - leastAnswerMs - Date.now()))) {
      throw transient(
        `no room among ${windowSize} outstanding submit_sm within the send's ${sendBudgetMs} ms`,
      );
    }
    try {
      for (
        let pauseMs = SMPP_THROTTLE_PAUSE_MS;
        ;
        pauseMs = Math.min(pauseMs * 2, SMPP_MAX_THROTTLE_PAUSE_MS)
      ) {
        const current = await boundSession(endMs - leastAnswerMs);
        const leftMs = endMs - Date.now();
        if (leftMs < leastAnswerMs)
          throw transient(`no time left in the send's ${sendBudgetMs} ms to submit`);
        const response = await request(
          current,
          new smpp.PDU("submit_sm", fields),
          Math.min(submitAnswerMs, leftMs),
        );
        const status = response.command_status;
        if (status === 0) return response;
        // Jitter keeps the parts held back together from coming back in one burst.
        const waitMs = pauseMs * (0.5 + Math.random() / 2);
        if (!TRY_AGAIN_SHORTLY_STATUSES.has(status) || Date.now() + waitMs + leastAnswerMs > endMs) {
          throw new SendFailure(`${id}: submit_sm refused (${statusName(status)})`, {
            permanent: PERMANENT_STATUSES.has(status),
          });
        }
        await new Promise((resolve) => setTimeout(resolve, waitMs));
      }
    } finally {
      submitWindow.leave();
    }
  }

  connect();

  return {
    id,
    channel: "sms",
    async send(message: RenderedMessage): Promise<SendReceipt> {
      try {
        return await submit(message);
      } catch (error) {
        if (error instanceof SendFailure) throw error;
        throw new SendFailure(`${id}: ${error instanceof Error ? error.message : String(error)}`, {
          cause: error,
        });
      }
    },
    async close(): Promise<void> {
      closed = true;
      clearTimeout(reconnectTimer);
      clearInterval(enquireTimer);
      const current = session;
      if (!current) return;
      if (bound)
        await request(current, new smpp.PDU("unbind"), SMPP_UNBIND_TIMEOUT_MS).catch(() => undefined);
      if (current.socket.destroyed) {
        onClosed(current);
        return;
      }
      await new Promise<void>((resolve) => {
        // "close" also runs onClosed, which fails what is still pending and stops here (closed).
        current.once("close", () => resolve());
        current.destroy();
      });
    },
  };
}

/**
 * Places for requests awaiting their response: `enter` resolves true once one is free (first come
 * first served), or false when none was within `waitMs`; `leave` gives a place back.
 */
function createWindow(size: number): { enter(waitMs: number): Promise<boolean>; leave(): void } {
  let free = size;
  // insertion-ordered, and a waiter that gave up leaves it without a search
  const waiting = new Set<() => void>();
  return {
    enter(waitMs) {
      if (free > 0) {
        free -= 1;
        return Promise.resolve(true);
      }
      if (waitMs <= 0) return Promise.resolve(false);
      return new Promise((resolve) => {
        const admit = () => {
          clearTimeout(timer);
          resolve(true);
        };
        const timer = setTimeout(() => {
          waiting.delete(admit);
          resolve(false);
        }, waitMs);
        waiting.add(admit);
      });
    },
    leave() {
      const [next] = waiting;
      if (next === undefined) {
        free += 1;
        return;
      }
      waiting.delete(next);
      next();
    },
  };
}

function sourceAddress(options: SmppSmsOptions): { address: string; ton: number; npi: number } {
  const { sourceAddr } = options;
  const international = /^\+\d+$/.test(sourceAddr);
  const alphanumeric = /[A-Za-z]/.test(sourceAddr);
  const ton = alphanumeric ? TON_ALPHANUMERIC : international ? TON_INTERNATIONAL : 0;
  const npi = alphanumeric ? NPI_UNKNOWN : NPI_ISDN;
  return {
    address: international ? sourceAddr.slice(1) : sourceAddr,
    ton: options.sourceAddrTon ?? ton,
    npi: options.sourceAddrNpi ?? npi,
  };
}

/** E.164 numbers go out as international/ISDN without the plus, as SMSCs expect. */
function destinationAddress(to: string): { address: string; ton: number; npi: number } {
  return to.startsWith("+")
    ? { address: to.slice(1), ton: TON_INTERNATIONAL, npi: NPI_ISDN }
    : { address: to, ton: 0, npi: NPI_ISDN };
}

function receiptText(pdu: smpp.PDU): string {
  for (const field of [pdu.short_message, pdu.message_payload]) {
    const message = typeof field === "object" && field !== null && "message" in field ? field.message : field;
    if (typeof message === "string" && message !== "") return message;
    if (Buffer.isBuffer(message) && message.length > 0) return message.toString("latin1");
  }
  return "";
}

function statusName(status: number): string {
  return STATUS_NAMES.get(status) ?? `0x${status.toString(16).padStart(8, "0")}`;
}
