import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DevInbox, DevInboxMessage } from "../../core/ports.js";
import { baseTime, uniqueId } from "./fixtures.contract.js";

export interface DevInboxFixture {
  devInbox: DevInbox;
  close(): Promise<void>;
}

/** The DevInbox contract: a recipient's messages, newest first (ties: the later write first). */
export function devInboxContract(name: string, open: () => Promise<DevInboxFixture>): void {
  describe(`DevInbox contract: ${name}`, () => {
    let fixture: DevInboxFixture;
    beforeAll(async () => {
      fixture = await open();
    });
    afterAll(async () => {
      await fixture?.close();
    });

    it("lists a recipient's messages newest first, up to the limit", async () => {
      const now = baseTime();
      const to = `${uniqueId("inbox").toLowerCase()}@example.com`;
      const message = (createdAtMs: number, code: string): DevInboxMessage => ({
        id: uniqueId("msg"),
        appId: "default",
        channel: "email",
        to,
        subject: "Your code",
        text: `Your code is ${code}`,
        code,
        createdAtMs,
      });
      const written = [message(now, "000001"), message(now + 2, "000002"), message(now + 1, "000003")];
      const sameTime = message(now + 2, "000004");
      for (const item of [...written, sameTime]) await fixture.devInbox.add(item);
      await fixture.devInbox.add({ ...message(now + 5, "999999"), to: "someone.else@example.com" });
      expect((await fixture.devInbox.list(to, 10)).map((item) => item.code)).toEqual([
        "000004",
        "000002",
        "000003",
        "000001",
      ]);
      expect(await fixture.devInbox.list(to, 1)).toEqual([sameTime]);
    });

    it("finds an address in any ASCII case of it, and only in ASCII case", async () => {
      const local = uniqueId("Inbox");
      const message: DevInboxMessage = {
        id: uniqueId("msg"),
        appId: "default",
        channel: "email",
        to: `${local}.Ä@example.com`,
        subject: "Your code",
        text: "Your code is 123456",
        code: "123456",
        createdAtMs: baseTime(),
      };
      await fixture.devInbox.add(message);
      expect(await fixture.devInbox.list(`${local.toUpperCase()}.Ä@EXAMPLE.COM`, 10)).toEqual([message]);
      expect(await fixture.devInbox.list(`${local.toLowerCase()}.Ä@example.com`, 10)).toEqual([message]);
      // Not folded beyond ASCII, as accounts and the failed-check budget are not.
      expect(await fixture.devInbox.list(`${local}.ä@example.com`, 10)).toEqual([]);
    });
  });
}
