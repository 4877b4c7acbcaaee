import type { CaptchaKind, CaptchaStore, StoredChallenge } from "../../core/ports.js";
import type { GroupCommit } from "./group-commit.js";
import type { SqliteDatabase } from "./sqlite-database.js";

interface ChallengeRow {
  token: string;
  app_id: string;
  kind: CaptchaKind;
  answer_hash: string;
  client_key: string | null;
  tries_left: number;
  expires_at: number;
  dev_answer: string | null;
}

function rowToChallenge(row: ChallengeRow): StoredChallenge {
  return {
    token: row.token,
    appId: row.app_id,
    kind: row.kind,
    answerHash: row.answer_hash,
    ...(row.client_key ? { clientKey: row.client_key } : {}),
    triesLeft: row.tries_left,
    expiresAtMs: row.expires_at,
    ...(row.dev_answer ? { devAnswer: row.dev_answer } : {}),
  };
}

/**
 * Captcha challenges and pass tokens in the embedded database. Writes go through the group commit
 * (see createGroupCommit): a flood of challenges shares commits, and no write sleeps on the event
 * loop while another connection holds the write lock.
 */
export function createSqliteCaptchaStore(db: SqliteDatabase, group: GroupCommit): CaptchaStore {
  const statements = {
    insert: db.prepare(`
      INSERT INTO captcha_challenges (token, app_id, kind, answer_hash, client_key, tries_left, expires_at, dev_answer)
      VALUES (@token, @appId, @kind, @answerHash, @clientKey, @triesLeft, @expiresAtMs, @devAnswer)`),
    // The try is taken in the same statement that reads the challenge: concurrent answers cannot
    // get more tries than it has.
    takeTry: db.prepare(`
      UPDATE captcha_challenges SET tries_left = tries_left - 1
      WHERE token = ? AND app_id = ? AND expires_at > ? AND tries_left > 0
      RETURNING *`),
    consume: db.prepare("DELETE FROM captcha_challenges WHERE token = ? AND app_id = ?"),
    peek: db.prepare("SELECT * FROM captcha_challenges WHERE token = ? AND expires_at > ?"),
    insertPass: db.prepare(
      "INSERT INTO captcha_passes (token_hash, app_id, bound_to, expires_at) VALUES (@tokenHash, @appId, @boundTo, @expiresAtMs)",
    ),
    consumePass: db.prepare(
      "DELETE FROM captcha_passes WHERE token_hash = ? AND app_id = ? AND expires_at > ? RETURNING *",
    ),
  };
  return {
    async saveChallenge(challenge) {
      await group.run(() =>
        statements.insert.run({
          ...challenge,
          clientKey: challenge.clientKey ?? null,
          devAnswer: challenge.devAnswer ?? null,
        }),
      );
    },
    async takeTry(appId, token, nowMs) {
      const row = (await group.run(() => statements.takeTry.get(token, appId, nowMs))) as
        | ChallengeRow
        | undefined;
      return row ? rowToChallenge(row) : null;
    },
    async consumeChallenge(appId, token) {
      return (await group.run(() => statements.consume.run(token, appId).changes)) === 1;
    },
    async peekChallenge(token, nowMs) {
      const row = statements.peek.get(token, nowMs) as ChallengeRow | undefined;
      return row ? rowToChallenge(row) : null;
    },
    async savePass(pass) {
      await group.run(() => statements.insertPass.run({ ...pass, boundTo: pass.boundTo ?? null }));
    },
    async consumePass(appId, tokenHash, nowMs) {
      const row = (await group.run(() => statements.consumePass.get(tokenHash, appId, nowMs))) as
        | { token_hash: string; app_id: string; bound_to: string | null; expires_at: number }
        | undefined;
      if (!row) return null;
      return {
        tokenHash: row.token_hash,
        appId: row.app_id,
        ...(row.bound_to ? { boundTo: row.bound_to } : {}),
        expiresAtMs: row.expires_at,
      };
    },
  };
}
