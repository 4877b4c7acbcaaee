import { afterEach, describe, expect, it } from "vitest";
import { createTestServer, type TestServer } from "../../../test/harness.js";

let t: TestServer;
afterEach(async () => {
  await t?.close();
});

async function send(to: string, channel: "email" | "sms" = "email", purpose = "sign_in") {
  const reply = await t.fastify.inject({
    method: "POST",
    url: "/v1/verifications",
    payload: { channel, to, purpose },
  });
  expect(reply.statusCode).toBe(201);
  return reply.json().id as string;
}

async function inbox(query: string) {
  return t.fastify.inject({ method: "GET", url: `/v1/dev/inbox?${query}` });
}

describe("GET /v1/dev/inbox", () => {
  describe("200", () => {
    it("lists what the dev sender delivered, with the code as a string", async () => {
      t = await createTestServer({ devSender: true });
      const id = await send("Ann@Example.COM");
      await t.deliverAll();
      const reply = await inbox("to=Ann%40example.com");
      expect(reply.statusCode).toBe(200);
      const { messages } = reply.json();
      expect(messages).toEqual([
        {
          id: expect.stringMatching(/^msg_/),
          channel: "email",
          to: "Ann@example.com",
          subject: "Your verifyd sign-in code",
          text: expect.stringContaining(messages[0].code),
          code: expect.stringMatching(/^\d{6}$/),
          created_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/),
        },
      ]);
      const checked = await t.fastify.inject({
        method: "POST",
        url: "/v1/verifications/check",
        payload: { id, code: messages[0].code },
      });
      expect(checked.statusCode).toBe(200);
    });

    it("finds a recipient however its address is spelled in the query", async () => {
      t = await createTestServer({ devSender: true });
      await send("+86 138 0013 8000", "sms");
      await t.deliverAll();
      for (const query of [
        "to=%2B8613800138000",
        "to=+8613800138000",
        "to=%208613800138000",
        "to=13800138000",
        "to=ann%40example.com",
      ]) {
        const { messages } = (await inbox(query)).json();
        expect(messages, query).toHaveLength(query.includes("ann") ? 0 : 1);
      }
    });

    // Regression: the inbox was looked up by the exact spelling stored, so a test asking for
    // ann@… found nothing sent to Ann@…, one recipient to every send rule; and an unencoded "+"
    // inside an address arrived as a space and was refused.
    it("finds an email address in any ASCII case, and reads a space in one as a '+'", async () => {
      t = await createTestServer({ devSender: true });
      await send("Ann+Shop@Example.COM");
      await t.deliverAll();
      for (const query of [
        "to=ann%2Bshop%40example.com",
        "to=ANN+SHOP@EXAMPLE.com",
        "to=Ann%2BShop@example.com",
        // pasted with spaces around it (the first version read the trailing one as a "+")
        "to=%20ann%2Bshop@example.com%20",
      ]) {
        const reply = await inbox(query);
        expect(reply.statusCode, query).toBe(200);
        expect(reply.json().messages, query).toHaveLength(1);
      }
      expect((await inbox("to=ann%40example.com")).json().messages).toHaveLength(0);
    });

    it("lists newest first and keeps recipients apart", async () => {
      t = await createTestServer({ devSender: true });
      await send("ann@example.com", "email", "sign_in");
      t.clock.advanceSeconds(60);
      await send("ann@example.com", "email", "reset_password");
      await send("bob@example.com");
      await t.deliverAll();
      const { messages } = (await inbox("to=ann%40example.com")).json();
      expect(messages.map((message: { subject: string }) => message.subject)).toEqual([
        "Reset your verifyd password",
        "Your verifyd sign-in code",
      ]);
    });

    it("is empty for a recipient nothing was sent to", async () => {
      t = await createTestServer({ devSender: true });
      expect((await inbox("to=nobody%40example.com")).json()).toEqual({ messages: [] });
    });

    it("holds nothing a test recipient was sent (they are never delivered)", async () => {
      t = await createTestServer({
        devSender: true,
        apps: [{ id: "default", testRecipients: [{ to: "review@example.com", code: "123456" }] }],
      });
      await send("review@example.com");
      await t.deliverAll();
      expect((await inbox("to=review%40example.com")).json()).toEqual({ messages: [] });
    });
  });

  describe("404", () => {
    it("does not exist in production mode", async () => {
      t = await createTestServer({
        env: { VERIFYD_MODE: "production", VERIFYD_SECRET: "production-secret-0123456789" },
      });
      const reply = await inbox("to=ann%40example.com");
      expect(reply.statusCode).toBe(404);
    });
  });
});
