import { describe, expect, it } from "vitest";
import { parseDeliveryReceipt } from "./smpp-delivery-receipt.js";

const text = (stat: string, err = "000") =>
  `id:0123456789 sub:001 dlvrd:001 submit date:2401011200 done date:2401011201 stat:${stat} err:${err} text:Your code`;

describe("parseDeliveryReceipt", () => {
  it("reads a delivered receipt from the SMPP 3.4 appendix B text", () => {
    expect(parseDeliveryReceipt({ text: text("DELIVRD") })).toEqual({
      providerMessageId: "0123456789",
      status: "delivered",
    });
  });

  it.each(["UNDELIV", "EXPIRED", "REJECTD", "DELETED", "UNKNOWN"])(
    "reads %s as failed, with the error code",
    (stat) => {
      expect(parseDeliveryReceipt({ text: text(stat, "034") })).toEqual({
        providerMessageId: "0123456789",
        status: "failed",
        error: `${stat} err:034`,
      });
    },
  );

  it("ignores intermediate states", () => {
    expect(parseDeliveryReceipt({ text: text("ENROUTE") })).toBeUndefined();
    expect(parseDeliveryReceipt({ text: text("ACCEPTD") })).toBeUndefined();
  });

  it("prefers the receipted_message_id and message_state TLVs over the text", () => {
    expect(
      parseDeliveryReceipt({ text: text("DELIVRD"), receiptedMessageId: "abc", messageState: 5 }),
    ).toEqual({
      providerMessageId: "abc",
      status: "failed",
      error: "UNDELIV err:000",
    });
    expect(parseDeliveryReceipt({ receiptedMessageId: "abc", messageState: 2 })).toEqual({
      providerMessageId: "abc",
      status: "delivered",
    });
  });

  it("accepts lower-case field names", () => {
    expect(parseDeliveryReceipt({ text: "id:77 stat:delivrd err:0" })).toEqual({
      providerMessageId: "77",
      status: "delivered",
    });
  });

  it("returns nothing without a message id or a state", () => {
    expect(parseDeliveryReceipt({ text: "stat:DELIVRD err:000" })).toBeUndefined();
    expect(parseDeliveryReceipt({ text: "id:77 err:000" })).toBeUndefined();
    expect(parseDeliveryReceipt({ text: "" })).toBeUndefined();
  });
});
