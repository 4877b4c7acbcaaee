import type { AddressInfo } from "node:net";
import smpp from "smpp";
import { afterEach, describe, expect, it } from "vitest";
import { renderedMessage } from "../../../../test/servers/rendered-message.js";
import { sendFailure } from "../../../../test/servers/send-failure.js";
import type { MessageSender } from "../../../core/ports.js";
import { createSmppSmsSender, type SmppSmsOptions } from "./smpp-sms-sender.js";

interface AcceptedPart {
  destination: string;
  /** `ref <reference> part <sequence>/<total>` of a concatenated part, `whole` otherwise */
  part: string;
}

interface WindowedSmsc {
  url: string;
  accepted: AcceptedPart[];
  refused: number;
  mostOutstanding: number;
  close(): Promise<void>;
}

/**
 * An SMSC as operators run them: at most `window` submit_sm per session awaiting their response,
 * the rest refused with `overflowStatus` (SMPP 3.4 sections 2.8 and 5.1.3); answers take
 * `answerDelayMs`. `refuse(n)` may refuse the n-th submit (from 1) with a status of its own.
 */
async function startWindowedSmsc(options: {
  window: number;
  answerDelayMs: number;
  overflowStatus?: number;
  refuse?: (submitNumber: number) => number | undefined;
}): Promise<WindowedSmsc> {
  const state = { accepted: [] as AcceptedPart[], refused: 0, mostOutstanding: 0 };
  let outstanding = 0;
  let submits = 0;
  const server = smpp.createServer({}, (session) => {
    session.on("error", () => {
      // the sender closing its socket at the end of a test
    });
    session.on("bind_transceiver", (pdu: smpp.PDU) => session.send(pdu.response()));
    session.on("enquire_link", (pdu: smpp.PDU) => session.send(pdu.response()));
    session.on("unbind", (pdu: smpp.PDU) => session.send(pdu.response()));
    session.on("submit_sm", (pdu: smpp.PDU) => {
      submits += 1;
      const refusal =
        options.refuse?.(submits) ??
        (outstanding >= options.window ? (options.overflowStatus ?? smpp.errors.ESME_RTHROTTLED) : undefined);
      if (refusal !== undefined) {
        state.refused += 1;
        session.send(pdu.response({ command_status: refusal }));
        return;
      }
      outstanding += 1;
      state.mostOutstanding = Math.max(state.mostOutstanding, outstanding);
      setTimeout(() => {
        outstanding -= 1;
        state.accepted.push({ destination: String(pdu.destination_addr), part: partOf(pdu) });
        session.send(pdu.response({ message_id: `m${state.accepted.length}` }));
      }, options.answerDelayMs);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  const { port } = server.address() as AddressInfo;
  return {
    url: `smpp://127.0.0.1:${port}`,
    get accepted() {
      return state.accepted;
    },
    get refused() {
      return state.refused;
    },
    get mostOutstanding() {
      return state.mostOutstanding;
    },
    close: async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const session of [...server.sessions]) session.destroy();
      await closed;
    },
  };
}

/** The concatenation header of a part (IEI 0x00: reference, total, sequence), as the SMSC read it. */
function partOf(pdu: smpp.PDU): string {
  const decoded = pdu.short_message as { udh?: Buffer[] } | undefined;
  const udh = decoded?.udh?.[0];
  return udh ? `ref ${udh[2]} part ${udh[4]}/${udh[3]}` : "whole";
}

const numbers = Array.from({ length: 20 }, (_, index) => `+86138001${String(38000 + index)}`);

describe("createSmppSmsSender flow control", () => {
  const cleanups: Array<() => Promise<void>> = [];

  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  async function smsc(options: Parameters<typeof startWindowedSmsc>[0]): Promise<WindowedSmsc> {
    const started = await startWindowedSmsc(options);
    cleanups.push(() => started.close());
    return started;
  }

  function sender(url: string, options: Partial<SmppSmsOptions> = {}): MessageSender {
    const created = createSmppSmsSender({
      url,
      systemId: "verifyd",
      password: "secret1",
      sourceAddr: "Acme",
      reconnectDelayMs: 20,
      ...options,
    });
    cleanups.push(async () => created.close?.());
    return created;
  }

  // @see .scratch/providers/smpp-window.test.ts: a claim of 20 went out at once to an SMSC with
  // a window of 5, and 15 failed their try as ESME_RTHROTTLED.
  it("keeps at most submitWindow submit_sm outstanding, and the rest wait in the sender", async () => {
    const fake = await smsc({ window: 5, answerDelayMs: 50 });
    const client = sender(fake.url, { submitWindow: 5 });

    const outcomes = await Promise.allSettled(numbers.map((to) => client.send(renderedMessage({ to }))));

    expect(outcomes.filter((outcome) => outcome.status === "rejected")).toEqual([]);
    expect(fake.refused).toBe(0);
    expect(fake.mostOutstanding).toBeLessThanOrEqual(5);
    expect(fake.accepted.map((part) => `+${part.destination}`).sort()).toEqual([...numbers].sort());
  });

  it.each([
    ["ESME_RTHROTTLED", smpp.errors.ESME_RTHROTTLED],
    ["ESME_RMSGQFUL", smpp.errors.ESME_RMSGQFUL],
  ])("submits again, within the send, what a busy SMSC refused with %s", async (_name, status) => {
    // the default window (10) overruns this SMSC's 5
    const fake = await smsc({ window: 5, answerDelayMs: 50, overflowStatus: status });
    const client = sender(fake.url);

    const outcomes = await Promise.allSettled(numbers.map((to) => client.send(renderedMessage({ to }))));

    expect(outcomes.filter((outcome) => outcome.status === "rejected")).toEqual([]);
    expect(fake.refused).toBeGreaterThan(0);
    expect(fake.accepted.map((part) => `+${part.destination}`).sort()).toEqual([...numbers].sort());
  });

  // @see .scratch/providers/smpp-parts.test.ts: the second part was refused, the try failed, and
  // the retry sent the whole text again under a new reference (an orphaned part, billed twice).
  it("submits a throttled part of a long text again under the same concatenation reference", async () => {
    const fake = await smsc({
      window: 10,
      answerDelayMs: 0,
      refuse: (submitNumber) => (submitNumber === 2 ? smpp.errors.ESME_RTHROTTLED : undefined),
    });
    const long = "您的验证码是 123456，10 分钟内有效。".repeat(4);

    const receipt = await sender(fake.url).send(renderedMessage({ text: long }));

    expect(fake.refused).toBe(1);
    const [first, second] = fake.accepted.map((part) => part.part);
    expect(fake.accepted).toHaveLength(2);
    expect(first).toMatch(/^ref (\d+) part 1\/2$/);
    expect(second).toBe(first?.replace("part 1/2", "part 2/2"));
    expect(receipt.providerMessageId).toBe("m2");
  });

  it("fails transiently when the SMSC keeps refusing until the send's budget is spent", async () => {
    const fake = await smsc({ window: 10, answerDelayMs: 0, refuse: () => smpp.errors.ESME_RTHROTTLED });
    const started = Date.now();

    const failure = await sendFailure(sender(fake.url, { sendBudgetMs: 600 }).send(renderedMessage()));

    expect(failure.permanent).toBe(false);
    expect(failure.message).toContain("ESME_RTHROTTLED");
    expect(fake.refused).toBeGreaterThan(1);
    expect(Date.now() - started).toBeLessThan(1_500);
  });

  it("fails transiently when no place in the window frees up within the send's budget", async () => {
    // the SMSC answers after the budget: the first send holds the one place until it gives up
    const fake = await smsc({ window: 10, answerDelayMs: 5_000 });
    const client = sender(fake.url, { submitWindow: 1, sendBudgetMs: 400 });
    const first = client.send(renderedMessage({ to: "+8613800138001" }));

    const failure = await sendFailure(client.send(renderedMessage({ to: "+8613800138002" })));

    expect(failure.permanent).toBe(false);
    // never submitted: clearly not sent
    expect(failure.unconfirmed).toBe(false);
    expect(failure.message).toContain("outstanding submit_sm");
    // submitted and left unanswered: the SMSC may have taken it
    expect((await sendFailure(first)).unconfirmed).toBe(true);
    expect((await sendFailure(first)).message).toMatch(/submit_sm_resp within/);
    expect(fake.mostOutstanding).toBe(1);
  });

  // @see .scratch/round2/smpp-deadline.test.ts: the parts of a long text went out one after
  // another, each waiting for its answer, and a text of three parts from an SMSC answering in 7 s
  // took 21 s, past the worker's try, which then sent it again.
  it("sends the parts of a long text together, so the text takes one answer's time", async () => {
    const fake = await smsc({ window: 10, answerDelayMs: 700 });
    const long = "您的验证码是 123456，10 分钟内有效。".repeat(6);
    const started = Date.now();

    const receipt = await sender(fake.url, { sendBudgetMs: 1_800 }).send(renderedMessage({ text: long }));

    expect(Date.now() - started).toBeLessThan(1_800);
    const parts = fake.accepted.map((part) => part.part);
    expect(parts).toHaveLength(3);
    expect(new Set(parts.map((part) => part.replace(/ part .*/, "")))).toHaveProperty("size", 1);
    expect(receipt.providerMessageId).toBeDefined();
  });

  it("ends within its budget, unconfirmed, when the SMSC does not answer in time", async () => {
    const fake = await smsc({ window: 10, answerDelayMs: 5_000 });
    const started = Date.now();

    const failure = await sendFailure(sender(fake.url, { sendBudgetMs: 600 }).send(renderedMessage()));

    expect(failure.permanent).toBe(false);
    expect(failure.unconfirmed).toBe(true);
    expect(Date.now() - started).toBeLessThan(1_000);
  });

  // Regression: a text whose first part the SMSC took and whose second it refused failed
  // transiently, and the retry sent the first part, code and all, again.
  it("leaves a long text unconfirmed when the SMSC took some of its parts and refused others", async () => {
    const fake = await smsc({
      window: 10,
      answerDelayMs: 0,
      refuse: (submit) => (submit === 2 ? smpp.errors.ESME_RSYSERR : undefined),
    });
    const long = "您的验证码是 123456，10 分钟内有效。".repeat(6);

    const failure = await sendFailure(sender(fake.url).send(renderedMessage({ text: long })));

    expect(fake.accepted).toHaveLength(2);
    expect(failure.unconfirmed).toBe(true);
    expect(failure.message).toContain("2 of 3 parts accepted");
  });
});
