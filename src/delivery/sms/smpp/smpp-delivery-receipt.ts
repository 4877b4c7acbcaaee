/** A final delivery outcome reported by the SMSC for one submitted message. */
export interface SmppReceipt {
  /** the message_id the SMSC returned in submit_sm_resp */
  providerMessageId: string;
  status: "delivered" | "failed";
  /** the SMSC's final state and error code, e.g. `UNDELIV err:001` */
  error?: string;
}

/** What a deliver_sm carrying a receipt may tell us; TLVs win over the text when both are present. */
export interface ReceiptFields {
  /** the short message (or message_payload) text: `id:… sub:… dlvrd:… stat:DELIVRD err:000 …` */
  text?: string;
  /** receipted_message_id TLV */
  receiptedMessageId?: string;
  /** message_state TLV */
  messageState?: number;
}

// SMPP 3.4 appendix B text states, and the message_state TLV values (section 5.2.28) they match.
const FINAL_TEXT_STATES: Record<string, SmppReceipt["status"]> = {
  DELIVRD: "delivered",
  EXPIRED: "failed",
  DELETED: "failed",
  UNDELIV: "failed",
  REJECTD: "failed",
  UNKNOWN: "failed",
};
const FINAL_TLV_STATES: Record<number, string> = {
  2: "DELIVRD",
  3: "EXPIRED",
  4: "DELETED",
  5: "UNDELIV",
  7: "UNKNOWN",
  8: "REJECTD",
};

/**
 * Reads a delivery receipt. Returns undefined for intermediate states (ENROUTE, ACCEPTD) and for
 * anything that does not name a message id and a state, since a guess would mark the wrong message.
 */
export function parseDeliveryReceipt(fields: ReceiptFields): SmppReceipt | undefined {
  const text = fields.text ?? "";
  const providerMessageId = fields.receiptedMessageId || /(?:^|\s)id:(\S+)/i.exec(text)?.[1];
  const state =
    fields.messageState === undefined
      ? /(?:^|\s)stat:([A-Za-z]+)/i.exec(text)?.[1]?.toUpperCase()
      : FINAL_TLV_STATES[fields.messageState];
  if (!providerMessageId || state === undefined) return undefined;

  const status = FINAL_TEXT_STATES[state];
  if (status === undefined) return undefined;
  if (status === "delivered") return { providerMessageId, status };
  const errorCode = /(?:^|\s)err:(\S+)/i.exec(text)?.[1];
  return { providerMessageId, status, error: errorCode ? `${state} err:${errorCode}` : state };
}
