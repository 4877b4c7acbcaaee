import { afterEach, describe, expect, it } from "vitest";
import type { DevInboxMessage } from "../../core/ports.js";
import { createSqliteBackend, type SqliteBackend } from "./index.js";

let backend: SqliteBackend | undefined;
afterEach(() => {
  backend?.close();
  backend = undefined;
});

function message(overrides: Partial<DevInboxMessage> = {}): DevInboxMessage {
  return {
    id: "msg_1",
    appId: "default",
    channel: "email",
    to: "ann@example.com",
    subject: "Your code",
    text: "Your code is 042917",
    code: "042917",
    createdAtMs: 1_000,
    ...overrides,
  };
}

describe("sqlite dev inbox", () => {
  it("lists a recipient's messages newest first", async () => {
    backend = createSqliteBackend({ path: ":memory:" });
    await backend.devInbox.add(message({ id: "msg_1", createdAtMs: 1_000 }));
    await backend.devInbox.add(message({ id: "msg_2", createdAtMs: 2_000 }));
    await backend.devInbox.add(message({ id: "msg_3", to: "bob@example.com" }));
    const listed = await backend.devInbox.list("ann@example.com", 10);
    expect(listed.map((each) => each.id)).toEqual(["msg_2", "msg_1"]);
    expect(listed[0]).toEqual(message({ id: "msg_2", createdAtMs: 2_000 }));
  });

  it("keeps the leading zeros of a code", async () => {
    backend = createSqliteBackend({ path: ":memory:" });
    await backend.devInbox.add(message({ code: "000123" }));
    expect((await backend.devInbox.list("ann@example.com", 1))[0]?.code).toBe("000123");
  });

  it("honours the limit", async () => {
    backend = createSqliteBackend({ path: ":memory:" });
    for (let i = 0; i < 5; i++) await backend.devInbox.add(message({ id: `msg_${i}`, createdAtMs: i }));
    expect(await backend.devInbox.list("ann@example.com", 3)).toHaveLength(3);
  });

  it("accepts the same message delivered again once, as a provider honouring the message id would", async () => {
    // Regression @see issue 2. The outbox delivers at least once: a process killed between the inbox write and marking the
    // row sent delivers it again after a restart. The redelivery must succeed, not fail for ever.
    backend = createSqliteBackend({ path: ":memory:" });
    await backend.devInbox.add(message());
    await expect(backend.devInbox.add(message())).resolves.toBeUndefined();
    expect(await backend.devInbox.list("ann@example.com", 10)).toHaveLength(1);
  });
});
