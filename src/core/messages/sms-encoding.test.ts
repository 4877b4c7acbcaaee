import { describe, expect, it } from "vitest";
import { smsCost } from "./sms-encoding.js";

describe("smsCost", () => {
  it("sends plain Latin text as GSM-7, 160 septets in one segment", () => {
    expect(smsCost("Your code is 042917.")).toEqual({ encoding: "GSM-7", units: 20, segments: 1 });
    expect(smsCost("a".repeat(160))).toEqual({ encoding: "GSM-7", units: 160, segments: 1 });
  });

  it("splits longer GSM-7 text into 153-septet parts", () => {
    expect(smsCost("a".repeat(161)).segments).toBe(2);
    expect(smsCost("a".repeat(306)).segments).toBe(2);
    expect(smsCost("a".repeat(307)).segments).toBe(3);
  });

  it("counts extension characters (€, [, {) as two septets, never split across parts", () => {
    expect(smsCost("€10 [ok]")).toEqual({ encoding: "GSM-7", units: 11, segments: 1 });
    expect(smsCost("€".repeat(80)).segments).toBe(1);
    expect(smsCost("€".repeat(81)).segments).toBe(2);
    // 152 septets then an escape pair: the pair moves whole to the second part
    expect(smsCost(`${"a".repeat(152)}€${"a".repeat(10)}`).segments).toBe(2);
  });

  it("keeps GSM accented letters in GSM-7 and turns to UCS-2 for anything else", () => {
    expect(smsCost("Código: 042917 — ok").encoding).toBe("UCS-2");
    expect(smsCost("Ihr Code: 042917, gültig 10 Min.").encoding).toBe("GSM-7");
    expect(smsCost("您的验证码是 042917")).toEqual({ encoding: "UCS-2", units: 13, segments: 1 });
  });

  it("fits 70 UCS-2 units in one segment and 67 per part beyond", () => {
    expect(smsCost("验".repeat(70)).segments).toBe(1);
    expect(smsCost("验".repeat(71)).segments).toBe(2);
    expect(smsCost("验".repeat(134)).segments).toBe(2);
    expect(smsCost("验".repeat(135)).segments).toBe(3);
  });

  it("never splits a surrogate pair", () => {
    // 66 units then an emoji (2 units): it cannot end the first 67-unit part
    const text = `${"验".repeat(66)}😀${"验".repeat(10)}`;
    expect(smsCost(text)).toEqual({ encoding: "UCS-2", units: 78, segments: 2 });
  });
});
