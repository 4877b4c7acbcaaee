import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, describe, expect, it } from "vitest";
import { databaseAt } from "../../../test/fakes/sqlite-at-version.js";
import { slotKey } from "../../core/verification/keys.js";
import { codeRecord, issueRequest, slotRef } from "../contract/fixtures.contract.js";
import { SQLITE_MIGRATIONS } from "../migrations/sqlite/index.js";
import { createSqliteBackend } from "./index.js";
import { migrateSqlite } from "./sqlite-database.js";

const dir = mkdtempSync(join(tmpdir(), "verifyd-sqlite-database-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const BUDGET = { limit: 20, windowSeconds: 86_400 };

describe("SQLite migrations", () => {
  it("apply each version once, in order, and record them", () => {
    const db = new Database(":memory:");
    const versions = SQLITE_MIGRATIONS.map((migration) => migration.version);
    expect(versions).toEqual([...versions].sort((a, b) => a - b));
    expect(migrateSqlite(db)).toEqual(versions);
    expect(migrateSqlite(db)).toEqual([]);
    db.close();
  });

  it("version 4 keeps the codes of an older file findable by their slot, whatever their status", async () => {
    const path = join(dir, "v3.db");
    const now = Date.now();
    const appId = "default";
    const approved = codeRecord(appId, now - 60_000, { to: "old@example.com", status: "approved" });
    const pending = codeRecord(appId, now - 30_000, { to: "old@example.com" });
    const older = databaseAt(3, path);
    const insert = older.prepare(
      `INSERT INTO codes (id, app_id, slot, channel, recipient, purpose, token_purposes, code_hash, status, attempts,
        max_attempts, created_at, expires_at, locale, account_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 5, ?, ?, 'en', NULL)`,
    );
    for (const code of [approved, pending]) {
      insert.run(
        code.id,
        appId,
        slotKey(code.channel, code.to, code.purpose),
        code.channel,
        code.to,
        code.purpose,
        code.tokenPurposes.join(","),
        code.codeHash,
        code.status,
        code.createdAtMs,
        code.expiresAtMs,
      );
    }
    older.close();

    const backend = createSqliteBackend({ path });
    try {
      const slotIndex = backend.db
        .prepare(
          "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'codes' AND name LIKE 'codes_%slot'",
        )
        .all();
      // one index of the slot, over every status: an approval no longer writes to it
      expect(slotIndex).toEqual([{ sql: "CREATE INDEX codes_slot ON codes (app_id, slot, created_at)" }]);
      const byRecipient = slotRef(appId, "email", "old@example.com", "sign_in");
      expect(await backend.verifications.consumeAttempt(byRecipient, BUDGET, now)).toMatchObject({
        kind: "counted",
        record: { id: pending.id, attempts: 1 },
      });
      // A new send to the slot supersedes the pending code and leaves the approved one as it was.
      const resend = codeRecord(appId, now, { to: "old@example.com" });
      await backend.verifications.issue(issueRequest(resend), now);
      expect((await backend.verifications.get(appId, pending.id))?.status).toBe("superseded");
      expect((await backend.verifications.get(appId, approved.id))?.status).toBe("approved");
      expect(await backend.verifications.consumeAttempt(byRecipient, BUDGET, now)).toMatchObject({
        kind: "counted",
        record: { id: resend.id },
      });
    } finally {
      await backend.close();
    }
  });
});
