import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newVerificationId, parseVerificationId } from "../../core/ids.js";
import type { CounterStore, FailureBudget, OutboxStore, VerificationStore } from "../../core/ports.js";
import { CodeSecrets } from "../../core/secrets.js";
import type { OutboxMessage } from "../../core/types.js";
import { failedChecksKey } from "../../core/verification/keys.js";
import {
  baseTime,
  CONTRACT_SECRETS,
  codeRecord,
  counter,
  issueRequest,
  slotRef,
  tokenFor,
  uniqueId,
} from "./fixtures.contract.js";

export interface VerificationStoreFixture {
  store: VerificationStore;
  /** the same backend's counters, to observe what `issue` and `consumeAttempt` counted */
  counters: CounterStore;
  /** the same backend's outbox, to observe the row `issue` queued */
  outbox: OutboxStore;
  close(): Promise<void>;
}

const BUDGET: FailureBudget = { limit: 20, windowSeconds: 86_400 };
const CLAIM_ALL = 10_000;
const DAY_MS = 86_400_000;

/**
 * The VerificationStore contract (core/ports.ts): every backend must pass it unchanged. Each case
 * uses its own app id, so cases never see each other's state in a shared fixture.
 */
export function verificationStoreContract(name: string, open: () => Promise<VerificationStoreFixture>): void {
  describe(`VerificationStore contract: ${name}`, () => {
    let fixture: VerificationStoreFixture;
    let store: VerificationStore;
    beforeAll(async () => {
      fixture = await open();
      store = fixture.store;
    });
    afterAll(async () => {
      await fixture?.close();
    });

    /** claims everything due and returns the messages of this verification */
    const queued = async (verificationId: string, nowMs: number): Promise<OutboxMessage[]> => {
      const claimed = await fixture.outbox.claim(CLAIM_ALL, DAY_MS, nowMs);
      return claimed.filter((message) => message.verificationId === verificationId);
    };

    /** two codes issued to one slot 5 s apart: the second supersedes the first */
    const issueTwiceToOneSlot = async (now: number) => {
      const appId = uniqueId("app");
      const first = codeRecord(appId, now);
      const second = codeRecord(appId, now + 5000);
      await store.issue(issueRequest(first), now);
      await store.issue(issueRequest(second), now + 5000);
      return { appId, first, second };
    };

    describe("issue", () => {
      it("saves the code as given and queues its message durably", async () => {
        const now = baseTime();
        const record = codeRecord(uniqueId("app"), now, { tokenPurposes: ["sign_in", "sign_up"] });
        const request = issueRequest(record, [counter("r:60", 1, 60), counter("r:600", 5, 600)]);
        expect(await store.issue(request, now)).toEqual({
          kind: "issued",
          resendAfterSeconds: 60,
          shadowed: [],
        });
        expect(await store.get(record.appId, record.id)).toEqual(record);
        expect(await queued(record.id, now)).toEqual([{ ...request.outbox, attempts: 1 }]);
      });

      it("round-trips every field, including an account id and a non-ASCII recipient", async () => {
        const now = baseTime();
        const record = codeRecord(uniqueId("app"), now, {
          channel: "sms",
          to: "+8613812345678",
          purpose: "change_contact",
          accountId: "acct|with:odd chars",
          locale: "zh-Hans-CN",
          maxAttempts: 3,
        });
        await store.issue(issueRequest(record), now);
        expect(await store.get(record.appId, record.id)).toEqual(record);
        const email = codeRecord(uniqueId("app"), now, { to: "zoë|ü:1@bücher.example" });
        await store.issue(issueRequest(email), now);
        expect(await store.get(email.appId, email.id)).toEqual(email);
      });

      it("refuses a send over any limit without counting any rule", async () => {
        const now = baseTime();
        const appId = uniqueId("app");
        const rules = [counter("r:60", 1, 60), counter("r:600", 5, 600)];
        await store.issue(issueRequest(codeRecord(appId, now), rules), now);
        const second = codeRecord(appId, now + 1000);
        expect(await store.issue(issueRequest(second, rules), now + 1000)).toEqual({
          kind: "refused",
          rule: "r:60:1/60s",
          refusal: "limit",
          retryAfterSeconds: 59,
        });
        expect(await store.get(appId, second.id)).toBeNull();
        // The 5/600 rule passed, yet counted nothing: a refused request consumes no budget.
        expect((await fixture.counters.peek(appId, "r:600", now + 1000)).count).toBe(1);
        expect(await queued(second.id, now + 1000)).toEqual([]);

        const third = codeRecord(appId, now + 61_000);
        expect(await store.issue(issueRequest(third, rules), now + 61_000)).toMatchObject({ kind: "issued" });
        expect(await fixture.counters.peek(appId, "r:600", now + 61_000)).toEqual({
          count: 2,
          resetAtMs: now + 600_000,
        });
      });

      it("names the outranking refusal: a denial over a limit over a captcha, then the longest wait", async () => {
        const now = baseTime();
        const appId = uniqueId("app");
        const rules = [
          counter("captcha", 1, 7200, { kind: "captcha" }),
          counter("short", 1, 60),
          counter("long", 1, 3600),
        ];
        await store.issue(issueRequest(codeRecord(appId, now), rules), now);
        expect(await store.issue(issueRequest(codeRecord(appId, now), rules), now)).toEqual({
          kind: "refused",
          rule: "long:1/3600s",
          refusal: "limit",
          retryAfterSeconds: 3600,
        });
        const denied = [...rules, counter("deny", 1, 30, { kind: "deny" })];
        await fixture.counters.hit(appId, "deny", 30, now);
        expect(await store.issue(issueRequest(codeRecord(appId, now), denied), now)).toMatchObject({
          rule: "deny:1/30s",
          refusal: "deny",
          retryAfterSeconds: 30,
        });
      });

      it("counts shadow rules without refusing and checks block flags without counting", async () => {
        const now = baseTime();
        const appId = uniqueId("app");
        const shadow = counter("shadow", 1, 600, { shadow: true });
        await store.issue(issueRequest(codeRecord(appId, now), [shadow]), now);
        expect(await store.issue(issueRequest(codeRecord(appId, now), [shadow]), now)).toEqual({
          kind: "issued",
          resendAfterSeconds: 0,
          shadowed: ["shadow:1/600s"],
        });
        expect((await fixture.counters.peek(appId, "shadow", now)).count).toBe(2);

        await fixture.counters.hit(appId, "block", 600, now);
        await fixture.counters.hit(appId, "block", 600, now);
        const blockAt = (limit: number) => counter("block", limit, 600, { increment: 0, kind: "deny" });
        expect(await store.issue(issueRequest(codeRecord(appId, now), [blockAt(1)]), now)).toMatchObject({
          kind: "refused",
          refusal: "deny",
        });
        expect(await store.issue(issueRequest(codeRecord(appId, now), [blockAt(2)]), now)).toMatchObject({
          kind: "issued",
          resendAfterSeconds: 0,
        });
        expect((await fixture.counters.peek(appId, "block", now)).count).toBe(2);
      });

      it("supersedes the slot's pending code", async () => {
        const now = baseTime();
        const { appId, first, second } = await issueTwiceToOneSlot(now);
        expect((await store.get(appId, first.id))?.status).toBe("superseded");
        expect((await store.get(appId, second.id))?.status).toBe("pending");
        const bySlot = await store.consumeAttempt(
          slotRef(appId, "email", second.to, "sign_in"),
          BUDGET,
          now + 6000,
        );
        expect(bySlot).toMatchObject({ kind: "counted", record: { id: second.id } });
        // Another purpose is another slot.
        const other = codeRecord(appId, now, { purpose: "sign_up", tokenPurposes: ["sign_up"] });
        await store.issue(issueRequest(other), now + 7000);
        expect((await store.get(appId, second.id))?.status).toBe("pending");
      });

      it("still answers for a superseded code by its id, and leaves it superseded", async () => {
        const now = baseTime();
        const { appId, first, second } = await issueTwiceToOneSlot(now);
        const superseded = { ...first, status: "superseded" };
        expect(await store.get(appId, first.id)).toEqual(superseded);
        expect(await store.consumeAttempt({ appId, id: first.id }, BUDGET, now + 6000)).toEqual({
          kind: "refused",
          record: superseded,
          reason: "superseded",
        });
        expect(await store.cancel(appId, first.id, now + 6000)).toEqual(superseded);
        expect(
          await store.approve(appId, first.id, tokenFor(first, now), failedChecksKey("email", first.to), now),
        ).toBe(false);
        expect(await store.get(appId, first.id)).toEqual(superseded);
        // ...and the newer code is untouched by all of that.
        expect(await store.get(appId, second.id)).toEqual(second);
        // A third code supersedes the second; the first keeps its answer.
        const third = codeRecord(appId, now + 7000);
        await store.issue(issueRequest(third), now + 7000);
        expect(await store.get(appId, first.id)).toEqual(superseded);
        expect(await store.get(appId, second.id)).toEqual({ ...second, status: "superseded" });
        expect(
          await store.consumeAttempt(slotRef(appId, "email", third.to, "sign_in"), BUDGET, now + 8000),
        ).toEqual({ kind: "counted", record: { ...third, attempts: 1 } });
      });

      it("keeps an approved or canceled code's status after a newer code for its slot", async () => {
        const now = baseTime();
        const appId = uniqueId("app");
        const approved = codeRecord(appId, now, { to: "a@example.com" });
        const canceled = codeRecord(appId, now, { to: "c@example.com" });
        for (const record of [approved, canceled]) await store.issue(issueRequest(record), now);
        const token = tokenFor(approved, now);
        await store.approve(appId, approved.id, token, failedChecksKey("email", approved.to), now);
        await store.cancel(appId, canceled.id, now);
        for (const to of ["a@example.com", "c@example.com"]) {
          await store.issue(issueRequest(codeRecord(appId, now + 1000, { to })), now + 1000);
        }
        expect(await store.get(appId, approved.id)).toEqual({ ...approved, status: "approved" });
        expect(await store.get(appId, canceled.id)).toEqual({ ...canceled, status: "canceled" });
        expect(await store.consumeAttempt({ appId, id: approved.id }, BUDGET, now + 2000)).toMatchObject({
          kind: "refused",
          reason: "approved",
        });
        expect(await store.cancel(appId, canceled.id, now + 2000)).toMatchObject({ status: "canceled" });
        expect(await store.findToken(appId, token.tokenHash, now + 2000)).toEqual(token);
      });

      it("supersedes and finds a code issued before a secret rotation", async () => {
        // Slot tags (and so the ids of a slot) change when the newest secret does; the slot's code
        // issued under the old secret must still be superseded by the next one and found by
        // recipient until then.
        const now = baseTime();
        const appId = uniqueId("app");
        const before = new CodeSecrets(["contract-secret-before-rotation"]);
        const after = new CodeSecrets(["contract-secret-after-rotation", "contract-secret-before-rotation"]);
        const old = codeRecord(appId, now, {}, before);
        await store.issue(issueRequest(old, [], { secrets: before }), now);
        const byRecipient = slotRef(appId, "email", old.to, "sign_in", after);
        expect(await store.consumeAttempt(byRecipient, BUDGET, now + 1000)).toEqual({
          kind: "counted",
          record: { ...old, attempts: 1 },
        });
        const resent = codeRecord(appId, now + 2000, {}, after);
        expect(resent.id.slice(0, 15)).not.toBe(old.id.slice(0, 15));
        await store.issue(issueRequest(resent, [], { secrets: after }), now + 2000);
        expect(await store.get(appId, old.id)).toMatchObject({ status: "superseded", attempts: 1 });
        expect(await store.consumeAttempt({ appId, id: old.id }, BUDGET, now + 3000)).toMatchObject({
          kind: "refused",
          reason: "superseded",
        });
        expect(await store.consumeAttempt(byRecipient, BUDGET, now + 3000)).toEqual({
          kind: "counted",
          record: { ...resent, attempts: 1 },
        });
      });

      // Regression: a slot was keyed by the address as typed, so a code sent to `Caseabc@` stayed
      // pending beside `caseabc@`'s, and a check by recipient typed in another case found neither.
      it("keeps one slot for an email address in any ASCII case, its code sent as given", async () => {
        const now = baseTime();
        const appId = uniqueId("app");
        const first = codeRecord(appId, now, { to: "Caseabc@example.com" });
        await store.issue(issueRequest(first), now);
        expect(
          await store.consumeAttempt(slotRef(appId, "email", "CASEABC@example.com", "sign_in"), BUDGET, now),
        ).toEqual({ kind: "counted", record: { ...first, attempts: 1 } });
        const second = codeRecord(appId, now + 1000, { to: "caseabc@example.com" });
        expect(parseVerificationId(second.id)?.slotTag).toBe(parseVerificationId(first.id)?.slotTag);
        await store.issue(issueRequest(second), now + 1000);
        expect((await store.get(appId, first.id))?.status).toBe("superseded");
        expect(
          await store.consumeAttempt(
            slotRef(appId, "email", "CaseAbc@example.com", "sign_in"),
            BUDGET,
            now + 2000,
          ),
        ).toEqual({ kind: "counted", record: { ...second, attempts: 1 } });
        // not a mailbox: a tagged address is another account's, and keeps its own code
        const tagged = codeRecord(appId, now + 3000, { to: "caseabc+x@example.com" });
        await store.issue(issueRequest(tagged), now + 3000);
        expect((await store.get(appId, second.id))?.status).toBe("pending");
      });

      it("finds and supersedes a code an earlier build filed under the address as typed", async () => {
        const now = baseTime();
        const appId = uniqueId("app");
        const to = "Caseabc@example.com";
        const earlierKey = `email:${to}:sign_in`;
        const earlierTags = CONTRACT_SECRETS.slotTags(appId, earlierKey);
        const earlier = codeRecord(appId, now, {
          to,
          id: newVerificationId(earlierTags[0] as string, now),
        });
        const { formerSlotKey: _, ...asEarlierBuild } = issueRequest(earlier);
        await store.issue({ ...asEarlierBuild, slotKey: earlierKey, slotTags: earlierTags }, now);
        const byRecipient = slotRef(appId, "email", to, "sign_in");
        expect(byRecipient.formerSlotKey).toBe(earlierKey);
        expect(await store.consumeAttempt(byRecipient, BUDGET, now + 1000)).toEqual({
          kind: "counted",
          record: { ...earlier, attempts: 1 },
        });
        const resent = codeRecord(appId, now + 2000, { to });
        await store.issue(issueRequest(resent), now + 2000);
        expect(await store.get(appId, earlier.id)).toMatchObject({ status: "superseded", attempts: 1 });
        expect(await store.consumeAttempt(byRecipient, BUDGET, now + 3000)).toEqual({
          kind: "counted",
          record: { ...resent, attempts: 1 },
        });
      });

      it("replays an idempotent request with its first answer, counting nothing", async () => {
        const now = baseTime();
        const appId = uniqueId("app");
        const rules = [counter("r:60", 1, 60), counter("r:600", 5, 600)];
        const idempotency = { key: "retry-1", fingerprint: "f".repeat(64) };
        const first = codeRecord(appId, now);
        await store.issue(issueRequest(first, rules, { idempotency }), now);
        const retry = codeRecord(appId, now + 2000);
        expect(await store.issue(issueRequest(retry, rules, { idempotency }), now + 2000)).toEqual({
          kind: "replayed",
          record: first,
          resendAfterSeconds: 60,
          fingerprint: idempotency.fingerprint,
        });
        // The fingerprint is the first request's: core tells a reused key from a retry.
        const otherRequest = { key: "retry-1", fingerprint: "0".repeat(64) };
        expect(
          await store.issue(issueRequest(codeRecord(appId, now), rules, { idempotency: otherRequest }), now),
        ).toMatchObject({
          kind: "replayed",
          fingerprint: idempotency.fingerprint,
        });
        expect(await store.get(appId, retry.id)).toBeNull();
        expect((await fixture.counters.peek(appId, "r:600", now + 2000)).count).toBe(1);
        expect(await queued(retry.id, now + 2000)).toEqual([]);
      });

      it("replays with the first code even after a newer one superseded it", async () => {
        const now = baseTime();
        const appId = uniqueId("app");
        const idempotency = { key: "retry-2", fingerprint: "e".repeat(64) };
        const first = codeRecord(appId, now);
        await store.issue(issueRequest(first, [], { idempotency }), now);
        await store.issue(issueRequest(codeRecord(appId, now + 1000)), now + 1000);
        expect(
          await store.issue(issueRequest(codeRecord(appId, now + 2000), [], { idempotency }), now + 2000),
        ).toEqual({
          kind: "replayed",
          record: { ...first, status: "superseded" },
          resendAfterSeconds: 0,
          fingerprint: idempotency.fingerprint,
        });
      });

      it("tells the first answer an Idempotency-Key replays without issuing anything", async () => {
        const now = baseTime();
        const appId = uniqueId("app");
        const idempotency = { key: "asked-1", fingerprint: "b".repeat(64) };
        expect(await store.replay(appId, idempotency.key, now)).toBeNull();
        const first = codeRecord(appId, now);
        await store.issue(issueRequest(first, [counter("r:60", 1, 60)], { idempotency }), now);
        expect(await store.replay(appId, idempotency.key, now + 2000)).toEqual({
          kind: "replayed",
          record: first,
          resendAfterSeconds: 60,
          fingerprint: idempotency.fingerprint,
        });
        // another app's key of the same name, and a key past its day, replay nothing
        expect(await store.replay(uniqueId("app"), idempotency.key, now)).toBeNull();
        expect(await store.replay(appId, idempotency.key, now + 24 * 3600 * 1000 + 1)).toBeNull();
      });

      it("issues nothing for a replay-only request with no first answer to give", async () => {
        const now = baseTime();
        const appId = uniqueId("app");
        const rules = [counter("r:60", 1, 60)];
        const replayOnly = { key: "spent-pass", fingerprint: "a".repeat(64), replayOnly: true };
        const record = codeRecord(appId, now);
        expect(await store.issue(issueRequest(record, rules, { idempotency: replayOnly }), now)).toEqual({
          kind: "not_replayed",
        });
        expect(await store.get(appId, record.id)).toBeNull();
        expect((await fixture.counters.peek(appId, "r:60", now)).count).toBe(0);
        expect(await queued(record.id, now)).toEqual([]);
        // With a first answer under the key, it is replayed as for any retry.
        const first = codeRecord(appId, now);
        await store.issue(
          issueRequest(first, rules, { idempotency: { key: "spent-pass", fingerprint: "a".repeat(64) } }),
          now,
        );
        expect(
          await store.issue(issueRequest(codeRecord(appId, now), rules, { idempotency: replayOnly }), now),
        ).toMatchObject({ kind: "replayed", record: { id: first.id } });
      });

      it("keeps a test recipient's code but queues no message for it", async () => {
        const now = baseTime();
        const record = codeRecord(uniqueId("app"), now);
        expect(await store.issue(issueRequest(record, [], { outbox: false }), now)).toMatchObject({
          kind: "issued",
        });
        expect(await store.get(record.appId, record.id)).toEqual(record);
        expect(await queued(record.id, now)).toEqual([]);
      });
    });

    describe("consumeAttempt", () => {
      it("counts the attempt and the recipient's failure before the caller compares", async () => {
        const now = baseTime();
        const record = codeRecord(uniqueId("app"), now);
        await store.issue(issueRequest(record), now);
        expect(await store.consumeAttempt({ appId: record.appId, id: record.id }, BUDGET, now)).toEqual({
          kind: "counted",
          record: { ...record, attempts: 1 },
        });
        expect((await store.get(record.appId, record.id))?.attempts).toBe(1);
        const failures = await fixture.counters.peek(record.appId, failedChecksKey("email", record.to), now);
        expect(failures).toEqual({ count: 1, resetAtMs: now + BUDGET.windowSeconds * 1000 });
      });

      // Regression: each spelling of an address had its own 20 failures a day, five times the
      // budget for one account (accounts fold ASCII case). @see .scratch/abuse F2
      it("counts failures against the address as accounts fold it, ASCII case", async () => {
        const now = baseTime();
        const appId = uniqueId("app");
        const shouted = codeRecord(appId, now, { to: "ANN.Lee@example.com" });
        await store.issue(issueRequest(shouted), now);
        await store.consumeAttempt({ appId, id: shouted.id }, BUDGET, now);
        const folded = await fixture.counters.peek(
          appId,
          failedChecksKey("email", "ann.lee@example.com"),
          now,
        );
        expect(folded.count).toBe(1);
        expect(failedChecksKey("email", "ANN.Lee@example.com")).toBe(
          failedChecksKey("email", "ann.lee@example.com"),
        );
        // non-ASCII letters are left as they are, as the accounts' lower() leaves them
        expect(failedChecksKey("email", "ÄNN@example.com")).toBe("f:email:Änn@example.com");
      });

      it("refuses once the attempts are spent, even before comparing", async () => {
        const now = baseTime();
        const record = codeRecord(uniqueId("app"), now, { maxAttempts: 2 });
        await store.issue(issueRequest(record), now);
        const ref = { appId: record.appId, id: record.id };
        await store.consumeAttempt(ref, BUDGET, now);
        await store.consumeAttempt(ref, BUDGET, now);
        expect(await store.consumeAttempt(ref, BUDGET, now)).toEqual({
          kind: "refused",
          record: { ...record, attempts: 2 },
          reason: "max_attempts",
        });
      });

      it("refuses an expired code without counting", async () => {
        const now = baseTime();
        const record = codeRecord(uniqueId("app"), now);
        await store.issue(issueRequest(record), now);
        expect(
          await store.consumeAttempt({ appId: record.appId, id: record.id }, BUDGET, record.expiresAtMs),
        ).toEqual({
          kind: "refused",
          record,
          reason: "expired",
        });
      });

      it("refuses codes that are no longer pending, and finds none by recipient", async () => {
        const now = baseTime();
        const appId = uniqueId("app");
        const approved = codeRecord(appId, now, { to: "a@example.com" });
        const canceled = codeRecord(appId, now, { to: "c@example.com" });
        const superseded = codeRecord(appId, now, { to: "s@example.com" });
        for (const record of [approved, canceled, superseded]) await store.issue(issueRequest(record), now);
        await store.approve(
          appId,
          approved.id,
          tokenFor(approved, now),
          failedChecksKey("email", approved.to),
          now,
        );
        await store.cancel(appId, canceled.id, now);
        await store.issue(issueRequest(codeRecord(appId, now, { to: "s@example.com" })), now);
        const reasons = [];
        for (const record of [approved, canceled, superseded]) {
          const outcome = await store.consumeAttempt({ appId, id: record.id }, BUDGET, now);
          reasons.push(outcome.kind === "refused" ? outcome.reason : outcome.kind);
        }
        expect(reasons).toEqual(["approved", "canceled", "superseded"]);
        for (const to of ["a@example.com", "c@example.com"]) {
          expect(await store.consumeAttempt(slotRef(appId, "email", to, "sign_in"), BUDGET, now)).toEqual({
            kind: "not_found",
          });
        }
      });

      it("finds nothing for an unknown id, slot or app", async () => {
        const now = baseTime();
        const record = codeRecord(uniqueId("app"), now);
        await store.issue(issueRequest(record), now);
        // An id minted for the same slot but never issued shares the live code's tag, not its code.
        const neverIssued = codeRecord(record.appId, now).id;
        expect(await store.get(record.appId, neverIssued)).toBeNull();
        expect(await store.cancel(record.appId, neverIssued, now)).toBeNull();
        expect(
          await store.approve(
            record.appId,
            neverIssued,
            tokenFor(record, now),
            failedChecksKey("email", record.to),
            now,
          ),
        ).toBe(false);
        const outcomes = await Promise.all([
          store.consumeAttempt({ appId: record.appId, id: uniqueId("vf") }, BUDGET, now),
          store.consumeAttempt({ appId: record.appId, id: neverIssued }, BUDGET, now),
          store.consumeAttempt(slotRef(record.appId, "email", "x@example.com", "sign_in"), BUDGET, now),
          store.consumeAttempt({ appId: uniqueId("app"), id: record.id }, BUDGET, now),
        ]);
        expect(outcomes).toEqual(Array.from({ length: 4 }, () => ({ kind: "not_found" })));
        expect(await store.get(record.appId, record.id)).toEqual(record);
        expect(await store.get(uniqueId("app"), record.id)).toBeNull();
      });

      it("refuses when the recipient's failed-check budget is spent, across codes", async () => {
        const now = baseTime();
        const appId = uniqueId("app");
        const budget = { limit: 2, windowSeconds: 3600 };
        const first = codeRecord(appId, now);
        await store.issue(issueRequest(first), now);
        await store.consumeAttempt({ appId, id: first.id }, budget, now);
        await store.consumeAttempt({ appId, id: first.id }, budget, now);
        // A new code for the same recipient does not reset the budget.
        const second = codeRecord(appId, now + 10_000);
        await store.issue(issueRequest(second), now + 10_000);
        expect(await store.consumeAttempt({ appId, id: second.id }, budget, now + 10_000)).toEqual({
          kind: "refused",
          record: second,
          reason: "failure_budget",
          retryAfterSeconds: 3590,
        });
      });

      it("counts exactly maxAttempts of 20 concurrent attempts", async () => {
        const now = baseTime();
        const record = codeRecord(uniqueId("app"), now, { maxAttempts: 5 });
        await store.issue(issueRequest(record), now);
        const outcomes = await Promise.all(
          Array.from({ length: 20 }, () =>
            store.consumeAttempt({ appId: record.appId, id: record.id }, BUDGET, now),
          ),
        );
        expect(outcomes.filter((outcome) => outcome.kind === "counted")).toHaveLength(5);
        expect(
          outcomes.filter((outcome) => outcome.kind === "refused" && outcome.reason === "max_attempts"),
        ).toHaveLength(15);
        expect((await store.get(record.appId, record.id))?.attempts).toBe(5);
      });
    });

    describe("approve", () => {
      it("approves once, saves the token and refunds the attempt's failure", async () => {
        const now = baseTime();
        const record = codeRecord(uniqueId("app"), now);
        const failureKey = failedChecksKey("email", record.to);
        await store.issue(issueRequest(record), now);
        await store.consumeAttempt({ appId: record.appId, id: record.id }, BUDGET, now);
        const token = tokenFor(record, now, { purposes: ["sign_in", "sign_up"] });
        expect(await store.approve(record.appId, record.id, token, failureKey, now)).toBe(true);
        expect((await fixture.counters.peek(record.appId, failureKey, now)).count).toBe(0);
        expect(await store.get(record.appId, record.id)).toMatchObject({ status: "approved", attempts: 1 });
        expect(await store.findToken(record.appId, token.tokenHash, now)).toEqual(token);
        expect(await store.approve(record.appId, record.id, tokenFor(record, now), failureKey, now)).toBe(
          false,
        );
      });

      it("lets exactly one of 20 concurrent approvals win", async () => {
        const now = baseTime();
        const record = codeRecord(uniqueId("app"), now);
        await store.issue(issueRequest(record), now);
        const results = await Promise.all(
          Array.from({ length: 20 }, () =>
            store.approve(
              record.appId,
              record.id,
              tokenFor(record, now),
              failedChecksKey("email", record.to),
              now,
            ),
          ),
        );
        expect(results.filter(Boolean)).toHaveLength(1);
      });
    });

    describe("refundAttempt", () => {
      it("takes back an attempt and a failure count, never below zero, and revives an exhausted code", async () => {
        const now = baseTime();
        const record = codeRecord(uniqueId("app"), now, { maxAttempts: 2 });
        const failureKey = failedChecksKey("email", record.to);
        await store.issue(issueRequest(record), now);
        const ref = { appId: record.appId, id: record.id };
        await store.consumeAttempt(ref, BUDGET, now);
        await store.consumeAttempt(ref, BUDGET, now);
        expect(await store.consumeAttempt(ref, BUDGET, now)).toMatchObject({ reason: "max_attempts" });
        await store.refundAttempt(record.appId, record.id, failureKey, now);
        expect(await store.get(record.appId, record.id)).toEqual({ ...record, attempts: 1 });
        expect((await fixture.counters.peek(record.appId, failureKey, now)).count).toBe(1);
        // The attempt taken back may be tried again: the code is under its cap once more.
        expect(await store.consumeAttempt(ref, BUDGET, now)).toEqual({
          kind: "counted",
          record: { ...record, attempts: 2 },
        });
        for (let i = 0; i < 3; i++) await store.refundAttempt(record.appId, record.id, failureKey, now);
        expect(await store.get(record.appId, record.id)).toEqual({ ...record, attempts: 0 });
        expect((await fixture.counters.peek(record.appId, failureKey, now)).count).toBe(0);
      });

      // Regression: SQLite kept a failure counter refunded to 0 with its window running, Redis
      // deleted it (66b34f6): after a right check given back, three wrong guesses 30 s later under a
      // 3-per-120-s budget were refused for 90 s on SQLite and 120 s on Redis. A refund to 0 now
      // takes the window with it everywhere, so the next failure starts a window of its own.
      it("takes the failure window away with the last failure given back", async () => {
        const now = baseTime();
        const record = codeRecord(uniqueId("app"), now, { maxAttempts: 10 });
        const failureKey = failedChecksKey("email", record.to);
        const budget = { limit: 3, windowSeconds: 120 };
        const ref = { appId: record.appId, id: record.id };
        await store.issue(issueRequest(record), now);
        await store.consumeAttempt(ref, budget, now);
        await store.refundAttempt(record.appId, record.id, failureKey, now);

        const later = now + 30_000;
        for (let i = 0; i < 3; i++) {
          expect(await store.consumeAttempt(ref, budget, later)).toMatchObject({ kind: "counted" });
        }
        expect(await fixture.counters.peek(record.appId, failureKey, later)).toEqual({
          count: 3,
          resetAtMs: later + 120_000,
        });
        expect(await store.consumeAttempt(ref, budget, later)).toMatchObject({
          kind: "refused",
          reason: "failure_budget",
          retryAfterSeconds: 120,
        });
      });

      it("takes back an attempt of a code no longer under the slot's key, and ignores an unknown id", async () => {
        const now = baseTime();
        const appId = uniqueId("app");
        const first = codeRecord(appId, now);
        const second = codeRecord(appId, now + 5000);
        const failureKey = failedChecksKey("email", first.to);
        await store.issue(issueRequest(first), now);
        await store.consumeAttempt({ appId, id: first.id }, BUDGET, now);
        await store.issue(issueRequest(second), now + 5000);
        await store.consumeAttempt({ appId, id: second.id }, BUDGET, now + 5000);
        await store.refundAttempt(appId, first.id, failureKey, now + 5000);
        expect(await store.get(appId, first.id)).toEqual({ ...first, status: "superseded", attempts: 0 });
        expect(await store.get(appId, second.id)).toEqual({ ...second, attempts: 1 });
        // An id minted for the slot but never issued names no code: only the failure comes back.
        await store.refundAttempt(appId, codeRecord(appId, now).id, failureKey, now + 5000);
        expect(await store.get(appId, second.id)).toEqual({ ...second, attempts: 1 });
        expect((await fixture.counters.peek(appId, failureKey, now + 5000)).count).toBe(0);
      });
    });

    // Optional port method: stores without a synchronous atomic step leave it out.
    describe("attemptAndApprove", () => {
      it("approves a right code with its attempt counted and no failure; counts a wrong one as a failure", async (context) => {
        const attemptAndApprove = store.attemptAndApprove?.bind(store);
        if (!attemptAndApprove) return context.skip();
        const now = baseTime();
        const record = codeRecord(uniqueId("app"), now);
        const failureKey = failedChecksKey("email", record.to);
        await store.issue(issueRequest(record), now);
        const ref = { appId: record.appId, id: record.id };
        const wrong = await attemptAndApprove(ref, BUDGET, now, () => null);
        expect(wrong).toEqual({ kind: "counted", record: { ...record, attempts: 1 } });
        expect((await fixture.counters.peek(record.appId, failureKey, now)).count).toBe(1);
        const token = tokenFor(record, now);
        const right = await attemptAndApprove(ref, BUDGET, now, (counted) => {
          expect(counted.attempts).toBe(2);
          return token;
        });
        expect(right).toEqual({ kind: "approved", record: { ...record, attempts: 2, status: "approved" } });
        expect((await fixture.counters.peek(record.appId, failureKey, now)).count).toBe(1);
        expect(await store.get(record.appId, record.id)).toMatchObject({ status: "approved", attempts: 2 });
        expect(await store.findToken(record.appId, token.tokenHash, now)).toEqual(token);
        expect(await attemptAndApprove(ref, BUDGET, now, () => tokenFor(record, now))).toMatchObject({
          kind: "refused",
          reason: "approved",
        });
      });
    });

    describe("tokens", () => {
      it("finds a live token and redeems it exactly once", async () => {
        const now = baseTime();
        const record = codeRecord(uniqueId("app"), now);
        await store.issue(issueRequest(record), now);
        const token = tokenFor(record, now);
        await store.approve(record.appId, record.id, token, failedChecksKey("email", record.to), now);
        expect(await store.findToken(uniqueId("app"), token.tokenHash, now)).toBeNull();
        expect(await store.findToken(record.appId, token.tokenHash, token.expiresAtMs)).toBeNull();
        const results = await Promise.all(
          Array.from({ length: 20 }, () => store.consumeToken(record.appId, token.tokenHash, now)),
        );
        expect(results.filter(Boolean)).toHaveLength(1);
        expect(await store.findToken(record.appId, token.tokenHash, now)).toBeNull();
      });

      it("does not redeem an expired token", async () => {
        const now = baseTime();
        const record = codeRecord(uniqueId("app"), now);
        await store.issue(issueRequest(record), now);
        const token = tokenFor(record, now, { expiresAtMs: now + 1000 });
        await store.approve(record.appId, record.id, token, failedChecksKey("email", record.to), now);
        expect(await store.consumeToken(record.appId, token.tokenHash, now + 1000)).toBe(false);
      });
    });

    describe("cancel", () => {
      it("cancels a pending code and leaves any other as it is", async () => {
        const now = baseTime();
        const appId = uniqueId("app");
        const pending = codeRecord(appId, now);
        await store.issue(issueRequest(pending), now);
        expect(await store.cancel(appId, pending.id, now)).toEqual({ ...pending, status: "canceled" });
        const approved = codeRecord(appId, now, { to: "b@example.com" });
        await store.issue(issueRequest(approved), now);
        await store.approve(
          appId,
          approved.id,
          tokenFor(approved, now),
          failedChecksKey("email", approved.to),
          now,
        );
        expect(await store.cancel(appId, approved.id, now)).toEqual({ ...approved, status: "approved" });
        expect(await store.cancel(appId, uniqueId("vf"), now)).toBeNull();
      });

      // Regression: Redis canceled them, and from then on the code read "canceled" instead of why
      // it ended (SQLite had been fixed alone). @see .scratch/parity finding 1
      it("leaves an expired or exhausted code as it is, so its status still says why it ended", async () => {
        const now = baseTime();
        const appId = uniqueId("app");
        const expired = codeRecord(appId, now, { expiresAtMs: now + 1000 });
        await store.issue(issueRequest(expired), now);
        expect(await store.cancel(appId, expired.id, now + 1000)).toEqual(expired);
        const exhausted = codeRecord(appId, now, { to: "b@example.com", maxAttempts: 1 });
        await store.issue(issueRequest(exhausted), now);
        await store.consumeAttempt({ appId, id: exhausted.id }, BUDGET, now);
        expect(await store.cancel(appId, exhausted.id, now)).toEqual({ ...exhausted, attempts: 1 });
        expect(await store.get(appId, exhausted.id)).toEqual({ ...exhausted, attempts: 1 });
      });
    });

    describe("deliveries", () => {
      it("lists the delivery attempts the outbox recorded, oldest first", async () => {
        const now = baseTime();
        const record = codeRecord(uniqueId("app"), now);
        await store.issue(issueRequest(record), now);
        const [message] = await queued(record.id, now);
        if (!message) throw new Error("no message queued");
        await fixture.outbox.markRetry(
          message,
          { provider: "a", status: "failed", atMs: now + 1, error: "down" },
          now + 2,
        );
        await fixture.outbox.markSent(message, {
          provider: "b",
          status: "sent",
          atMs: now + 3,
          providerMessageId: "p-1",
        });
        expect(await store.deliveries(record.appId, record.id)).toEqual([
          { provider: "a", status: "failed", atMs: now + 1, error: "down" },
          { provider: "b", status: "sent", atMs: now + 3, providerMessageId: "p-1" },
        ]);
      });
    });
  });
}
