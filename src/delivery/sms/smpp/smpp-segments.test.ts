import { describe, expect, it } from "vitest";
import { segmentText } from "./smpp-segments.js";

const UDH_LENGTH = 6;

describe("segmentText", () => {
  it("keeps up to 160 GSM-7 characters in one unsplit message", () => {
    const segments = segmentText("a".repeat(160), "udh", 7);

    expect(segments).toHaveLength(1);
    expect(segments[0]).toMatchObject({ dataCoding: 0, hasUdh: false });
    expect(segments[0]?.shortMessage.length).toBe(160);
  });

  it("splits 161 GSM-7 characters into two parts of at most 153 behind a concatenation header", () => {
    const segments = segmentText("a".repeat(161), "udh", 7);

    expect(segments.map((segment) => segment.shortMessage.length - UDH_LENGTH)).toEqual([153, 8]);
    expect(segments.map((segment) => [...segment.shortMessage.subarray(0, UDH_LENGTH)])).toEqual([
      [0x05, 0x00, 0x03, 7, 2, 1],
      [0x05, 0x00, 0x03, 7, 2, 2],
    ]);
  });

  it("counts GSM-7 extension characters as two septets", () => {
    expect(segmentText("€".repeat(80), "udh", 1)).toHaveLength(1);
    expect(segmentText("€".repeat(81), "udh", 1)).toHaveLength(2);
  });

  it("never separates an escape from the extension character it introduces", () => {
    const segments = segmentText(`${"a".repeat(152)}€${"b".repeat(20)}`, "udh", 1);

    const first = segments[0]?.shortMessage.subarray(UDH_LENGTH);
    const second = segments[1]?.shortMessage.subarray(UDH_LENGTH);
    expect(first?.length).toBe(152);
    expect(first?.at(-1)).not.toBe(0x1b);
    expect(second?.[0]).toBe(0x1b);
  });

  it("uses UCS-2 big-endian for text outside GSM-7, 70 characters per single message", () => {
    const [single] = segmentText("验".repeat(70), "udh", 1);

    expect(single).toMatchObject({ dataCoding: 8, hasUdh: false });
    expect(single?.shortMessage.subarray(0, 2)).toEqual(Buffer.from([0x9a, 0x8c]));
    expect(
      segmentText("验".repeat(71), "udh", 1).map((segment) => segment.shortMessage.length - UDH_LENGTH),
    ).toEqual([134, 8]);
  });

  it("carries a long text whole in message_payload when asked to", () => {
    const [segment, ...rest] = segmentText("a".repeat(400), "payload", 1);

    expect(rest).toHaveLength(0);
    expect(segment).toMatchObject({ dataCoding: 0, hasUdh: false });
    expect(segment?.shortMessage.length).toBe(0);
    expect(segment?.messagePayload?.length).toBe(400);
  });
});
