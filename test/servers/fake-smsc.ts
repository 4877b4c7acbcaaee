import type { AddressInfo } from "node:net";
import smpp from "smpp";

export interface FakeSmscOptions {
  systemId: string;
  password: string;
  /**
   * The final state reported in a deliver_sm receipt right after each accepted submit that asks
   * for one (`DELIVRD`, `UNDELIV`, …); null sends no receipts. Default `DELIVRD`.
   */
  receiptStat?: string | null | ((submit: SubmittedMessage) => string | null);
  /** how receipts travel: deliver_sm with the text format (default), or data_sm with TLVs only */
  receiptVia?: "deliver_sm" | "data_sm";
  /** answer submit_sm for these destination addresses with this command_status */
  refuseDestinations?: Record<string, number>;
  /** leave submit_sm unanswered, like an SMSC that has stalled */
  stallSubmits?: boolean;
}

/** One submit_sm as the SMSC decoded it. */
export interface SubmittedMessage {
  messageId: string;
  systemId: string;
  sourceAddr: string;
  sourceAddrTon: number;
  sourceAddrNpi: number;
  destinationAddr: string;
  destAddrTon: number;
  destAddrNpi: number;
  esmClass: number;
  registeredDelivery: number;
  dataCoding: number;
  /** decoded text of this submit (its part, for a concatenated message) */
  text: string;
  /** the concatenation header, when the message is one part of several */
  part?: { reference: number; total: number; sequence: number };
  /** the whole text came as a message_payload TLV */
  viaPayload: boolean;
}

export interface BindAttempt {
  systemId: string;
  password: string;
  systemType: string;
  interfaceVersion: number;
  accepted: boolean;
}

export interface FakeSmsc {
  readonly port: number;
  /** `smpp://127.0.0.1:<port>` */
  readonly url: string;
  readonly binds: BindAttempt[];
  readonly submits: SubmittedMessage[];
  /** message ids whose receipt the client acknowledged with deliver_sm_resp */
  readonly acknowledgedReceipts: string[];
  enquireLinks(): number;
  unbinds(): number;
  /** whole texts, with concatenated parts joined in order */
  texts(): string[];
  /** resolves once `count` binds have been accepted in total */
  waitForBinds(count: number): Promise<void>;
  /** sends a request PDU over the latest session; resolves with the client's answer */
  request(pdu: smpp.PDU): Promise<smpp.PDU>;
  /** cut every open session without unbind, like a network failure; keeps listening */
  dropSessions(): void;
  close(): Promise<void>;
}

// message_state TLV values of SMPP 3.4 section 5.2.28, for receipts sent as data_sm
const MESSAGE_STATES: Record<string, number> = { DELIVRD: 2, EXPIRED: 3, DELETED: 4, UNDELIV: 5, REJECTD: 8 };

/**
 * A loopback SMSC built on the same `smpp` package: it checks bind credentials, answers submit_sm
 * with a message id, and reports each delivery with a deliver_sm receipt, as a real SMSC would.
 */
export async function startFakeSmsc(options: FakeSmscOptions): Promise<FakeSmsc> {
  const binds: BindAttempt[] = [];
  const submits: SubmittedMessage[] = [];
  const acknowledgedReceipts: string[] = [];
  const bindWaiters: Array<{ count: number; resolve: () => void }> = [];
  let enquireLinks = 0;
  let unbinds = 0;
  let nextId = 1;
  const receiptStat = options.receiptStat === undefined ? "DELIVRD" : options.receiptStat;

  const server = smpp.createServer({}, (session) => {
    let boundAs: string | undefined;
    session.on("error", () => {
      // a client vanishing mid-session is what some tests do on purpose
    });

    session.on("bind_transceiver", (pdu: smpp.PDU) => {
      const attempt: BindAttempt = {
        systemId: String(pdu.system_id),
        password: String(pdu.password),
        systemType: String(pdu.system_type),
        interfaceVersion: Number(pdu.interface_version),
        accepted: pdu.system_id === options.systemId && pdu.password === options.password,
      };
      binds.push(attempt);
      if (!attempt.accepted) {
        const status =
          pdu.system_id === options.systemId ? smpp.errors.ESME_RINVPASWD : smpp.errors.ESME_RINVSYSID;
        session.send(pdu.response({ command_status: status }));
        return;
      }
      boundAs = attempt.systemId;
      session.send(pdu.response({ system_id: "fake-smsc" }));
      const accepted = binds.filter((bind) => bind.accepted).length;
      for (const waiter of bindWaiters.filter((waiting) => accepted >= waiting.count)) {
        bindWaiters.splice(bindWaiters.indexOf(waiter), 1);
        waiter.resolve();
      }
    });

    session.on("submit_sm", (pdu: smpp.PDU) => {
      if (boundAs === undefined) {
        session.send(pdu.response({ command_status: smpp.errors.ESME_RINVBNDSTS }));
        return;
      }
      if (options.stallSubmits) return;
      const destination = String(pdu.destination_addr);
      const refusal = options.refuseDestinations?.[destination];
      if (refusal !== undefined) {
        session.send(pdu.response({ command_status: refusal }));
        return;
      }
      const messageId = `fake-${nextId++}`;
      const submit: SubmittedMessage = { messageId, systemId: boundAs, ...describeSubmit(pdu) };
      submits.push(submit);
      session.send(pdu.response({ message_id: messageId }));
      const stat = typeof receiptStat === "function" ? receiptStat(submit) : receiptStat;
      if (stat !== null && (Number(pdu.registered_delivery) & 0x01) === 1) {
        const addresses = {
          source_addr: destination,
          destination_addr: String(pdu.source_addr),
          esm_class: 0x04,
        };
        const receipt =
          options.receiptVia === "data_sm"
            ? new smpp.PDU("data_sm", {
                ...addresses,
                receipted_message_id: messageId,
                message_state: MESSAGE_STATES[stat] ?? 7,
              })
            : new smpp.PDU("deliver_sm", {
                ...addresses,
                data_coding: 0,
                short_message: `id:${messageId} sub:001 dlvrd:${stat === "DELIVRD" ? "001" : "000"} submit date:2401011200 done date:2401011201 stat:${stat} err:${stat === "DELIVRD" ? "000" : "001"} text:`,
              });
        session.send(receipt, (response) => {
          if (response.command_status === 0) acknowledgedReceipts.push(messageId);
        });
      }
    });

    session.on("enquire_link", (pdu: smpp.PDU) => {
      enquireLinks += 1;
      session.send(pdu.response());
    });

    session.on("unbind", (pdu: smpp.PDU) => {
      unbinds += 1;
      boundAs = undefined;
      session.send(pdu.response(), undefined, () => session.close());
    });
  });

  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  const { port } = server.address() as AddressInfo;

  return {
    port,
    url: `smpp://127.0.0.1:${port}`,
    binds,
    submits,
    acknowledgedReceipts,
    enquireLinks: () => enquireLinks,
    unbinds: () => unbinds,
    texts: () => joinParts(submits),
    waitForBinds: (count) =>
      binds.filter((bind) => bind.accepted).length >= count
        ? Promise.resolve()
        : new Promise<void>((resolve) => bindWaiters.push({ count, resolve })),
    request: (pdu) =>
      new Promise((resolve, reject) => {
        const session = server.sessions.at(-1);
        if (!session?.send(pdu, resolve)) reject(new Error("no open session"));
      }),
    dropSessions: () => {
      for (const session of [...server.sessions]) session.destroy();
    },
    close: async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const session of [...server.sessions]) session.destroy();
      await closed;
    },
  };
}

function describeSubmit(pdu: smpp.PDU): Omit<SubmittedMessage, "messageId" | "systemId"> {
  const short = pdu.short_message;
  const payload = pdu.message_payload;
  const viaPayload = isDecoded(payload) && payload.message !== "";
  const decoded = viaPayload ? payload : short;
  const concatenation = isDecoded(short) ? short.udh?.find((header) => header[0] === 0x00) : undefined;
  return {
    sourceAddr: String(pdu.source_addr),
    sourceAddrTon: Number(pdu.source_addr_ton),
    sourceAddrNpi: Number(pdu.source_addr_npi),
    destinationAddr: String(pdu.destination_addr),
    destAddrTon: Number(pdu.dest_addr_ton),
    destAddrNpi: Number(pdu.dest_addr_npi),
    esmClass: Number(pdu.esm_class),
    registeredDelivery: Number(pdu.registered_delivery),
    dataCoding: Number(pdu.data_coding),
    text: isDecoded(decoded) ? decoded.message : "",
    viaPayload,
    ...(concatenation
      ? {
          part: {
            reference: concatenation[2] ?? 0,
            total: concatenation[3] ?? 0,
            sequence: concatenation[4] ?? 0,
          },
        }
      : {}),
  };
}

/** The `smpp` package decodes short_message and message_payload into `{udh?, message}`. */
function isDecoded(value: unknown): value is { message: string; udh?: Buffer[] } {
  return (
    typeof value === "object" &&
    value !== null &&
    typeof (value as { message?: unknown }).message === "string"
  );
}

function joinParts(submits: SubmittedMessage[]): string[] {
  const texts: string[] = [];
  const groups = new Map<string, SubmittedMessage[]>();
  for (const submit of submits) {
    if (!submit.part) {
      texts.push(submit.text);
      continue;
    }
    const key = `${submit.destinationAddr}/${submit.part.reference}`;
    const group = groups.get(key) ?? [];
    group.push(submit);
    groups.set(key, group);
    if (group.length === submit.part.total) {
      group.sort((a, b) => (a.part?.sequence ?? 0) - (b.part?.sequence ?? 0));
      texts.push(group.map((part) => part.text).join(""));
      groups.delete(key);
    }
  }
  return texts;
}
