/**
 * An email address in any ASCII case is one recipient: a code sent to one spelling supersedes the
 * code sent to another, and a check by recipient finds it whatever case the user types. Here end
 * to end in each mode, for the stores keep a slot's codes differently (SQLite by key, Redis by a
 * keyed tag of it).
 */
import { afterEach, describe, expect, it } from "vitest";
import {
  type ClusterTestServer,
  createTestServer,
  modesToTest,
  type TestServer,
} from "../../../test/harness.js";
import { newVerificationId } from "../ids.js";
import type { App, CodeRecord } from "../types.js";

const MODES = await modesToTest("one recipient in any ASCII case");

let t: TestServer | ClusterTestServer | undefined;
afterEach(async () => {
  await t?.close();
  t = undefined;
});

describe.each(MODES)("one email recipient in any ASCII case ($mode)", ({ cluster }) => {
  const server = () => {
    if (!t) throw new Error("open() first");
    return t;
  };

  async function open(): Promise<App> {
    // No per-recipient rule, so that the second spelling's send is not refused as a resend.
    const apps = [{ id: "default", policy: { perRecipient: [], perIp: [] } }];
    t = cluster ? await createTestServer({ cluster, apps }) : await createTestServer({ apps });
    const app = await t.engine.apps.byId("default");
    if (!app) throw new Error("the app default is missing");
    return app;
  }

  async function send(to: string): Promise<{ id: string; code: string }> {
    const sent = await server().fastify.inject({
      method: "POST",
      url: "/v1/verifications",
      payload: { channel: "email", to, purpose: "sign_in" },
    });
    expect(sent.statusCode, sent.body).toBe(201);
    await server().deliverAll();
    const code = server().email.lastCodeFor(to);
    if (code === undefined) throw new Error(`no code was delivered to ${to}`);
    return { id: sent.json().id, code };
  }

  const statusOf = async (id: string) =>
    (await server().fastify.inject({ method: "GET", url: `/v1/verifications/${id}` })).json().status;

  const checkById = (id: string, code: string) =>
    server().fastify.inject({ method: "POST", url: "/v1/verifications/check", payload: { id, code } });

  const checkByRecipient = (app: App, to: string, code: string) =>
    server().engine.checkCode({ app, target: { channel: "email", to, purpose: "sign_in" }, code });

  // Regression: the slot was keyed by the address as typed, so `Caseabc@`'s code stayed pending
  // beside `caseabc@`'s and both approved: two live codes for one recipient and purpose.
  it("supersedes the code sent to another spelling of the address", async () => {
    await open();
    const first = await send("Caseabc@example.com");
    const second = await send("caseabc@example.com");
    expect(await statusOf(first.id)).toBe("superseded");
    expect(await statusOf(second.id)).toBe("pending");
    const stale = await checkById(first.id, first.code);
    expect(stale.statusCode, stale.body).toBe(410);
    expect(stale.json()).toMatchObject({ code: "CODE_SUPERSEDED" });
    const fresh = await checkById(second.id, second.code);
    expect(fresh.statusCode, fresh.body).toBe(200);
  });

  // Regression: a check by recipient (Fresns, IDaaS, CloudBase) looked the code up by the address
  // as the user typed it this time, so a code sent to `Caseabc@` was not found for `CASEABC@`.
  it("finds the code by recipient whatever case the check types", async () => {
    const app = await open();
    const sent = await send("Caseabc@example.com");
    const checked = await checkByRecipient(app, "CASEABC@Example.com", sent.code);
    expect(checked.record).toMatchObject({ id: sent.id, to: "Caseabc@example.com", status: "approved" });
  });

  // Upgrade: a build before the fold filed a code under the address as typed; for the rest of its
  // life it is still found by recipient in that spelling, and superseded by a resend to it.
  it("still checks and supersedes a code an earlier build filed under the address as typed", async () => {
    const app = await open();
    const { deps } = server().engine;
    const to = "Caseabc@example.com";
    const earlierKey = `email:${to}:sign_in`;
    const issueAsEarlierBuild = async (code: string): Promise<CodeRecord> => {
      const now = deps.clock.nowMs();
      const slotTags = deps.secrets.slotTags(app.id, earlierKey);
      const id = newVerificationId(slotTags[0] as string, now);
      const record: CodeRecord = {
        id,
        appId: app.id,
        channel: "email",
        to,
        purpose: "sign_in",
        tokenPurposes: ["sign_in"],
        codeHash: deps.secrets.hashCode(id, code),
        status: "pending",
        attempts: 0,
        maxAttempts: 5,
        createdAtMs: now,
        expiresAtMs: now + 600_000,
        locale: "en",
      };
      const issued = await deps.store.issue(
        { appId: app.id, counters: [], slotKey: earlierKey, slotTags, code: record, outbox: null },
        now,
      );
      expect(issued.kind).toBe("issued");
      return record;
    };

    const checked = await issueAsEarlierBuild("123456");
    expect((await checkByRecipient(app, to, "123456")).record).toMatchObject({
      id: checked.id,
      status: "approved",
    });

    const earlier = await issueAsEarlierBuild("654321");
    const resent = await send(to);
    expect(await statusOf(earlier.id)).toBe("superseded");
    expect((await checkByRecipient(app, to, resent.code)).record).toMatchObject({ id: resent.id });
    const superseded = await checkById(earlier.id, "654321");
    expect(superseded.statusCode, superseded.body).toBe(410);
  });
});
