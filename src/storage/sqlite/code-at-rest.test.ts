import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { createTestServer, type TestServer } from "../../../test/harness.js";
import { CodeSecrets, outboxSealContext } from "../../core/secrets.js";
import type { Channel, Purpose } from "../../core/types.js";

/**
 * DESIGN.md: a code is never stored in plaintext; the outbox carries it sealed (AES-256-GCM) and
 * erases it once delivered; only the dev inbox may hold it. These tests issue codes, deliver some,
 * leave some queued, and search every byte of the SQLite files (database, WAL, shared memory).
 *
 * Codes are 10 digits long so that a code turning up by chance in random bytes, hex hashes or
 * base64 (about 1 in 10^10 per position) cannot make the test flaky.
 */

const SECRET = "code-at-rest-secret-0123456789";
const RECIPIENTS = Array.from({ length: 30 }, (_, i) =>
  i % 3 === 2
    ? { channel: "sms" as const, to: `+86138001380${String(i).padStart(2, "0")}` }
    : { channel: "email" as const, to: `user${i}@example.com` },
);

let t: TestServer | undefined;
let dataDir: string | undefined;
afterEach(async () => {
  await t?.close();
  t = undefined;
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  dataDir = undefined;
});

async function start(devSender: boolean): Promise<TestServer> {
  dataDir = mkdtempSync(join(tmpdir(), "verifyd-at-rest-"));
  t = await createTestServer({
    dataDir,
    devSender,
    env: { VERIFYD_SECRET: SECRET },
    apps: [
      {
        id: "default",
        policy: { codeLength: 10, perIp: [] },
        abuse: { captcha: { native: "never" } },
      },
    ],
  });
  return t;
}

async function issue(server: TestServer, recipients: typeof RECIPIENTS): Promise<string[]> {
  const ids: string[] = [];
  for (const recipient of recipients) {
    const reply = await server.fastify.inject({
      method: "POST",
      url: "/v1/verifications",
      payload: { ...recipient, purpose: "sign_in" },
    });
    expect(reply.statusCode).toBe(201);
    ids.push(reply.json().id);
  }
  return ids;
}

/** Every file of the data dir that belongs to the database, as raw bytes. */
function databaseFiles(dir: string): Map<string, Buffer> {
  const files = new Map<string, Buffer>();
  for (const name of readdirSync(dir)) {
    if (name.startsWith("verifyd.db")) files.set(name, readFileSync(join(dir, name)));
  }
  return files;
}

function filesContaining(files: Map<string, Buffer>, needle: string): string[] {
  return [...files].filter(([, bytes]) => bytes.includes(Buffer.from(needle, "utf8"))).map(([name]) => name);
}

interface OutboxRow {
  app_id: string;
  verification_id: string;
  channel: Channel;
  recipient: string;
  purpose: Purpose;
  status: string;
  sealed_code: string | null;
}

function outbox(server: TestServer): OutboxRow[] {
  return server.server.backend.db
    .prepare(
      "SELECT app_id, verification_id, channel, recipient, purpose, status, sealed_code FROM outbox ORDER BY created_at, rowid",
    )
    .all() as OutboxRow[];
}

describe("no plaintext code at rest", () => {
  it("keeps neither delivered nor queued codes in the database, WAL or shared-memory files", async () => {
    const server = await start(false);
    const delivered = RECIPIENTS.slice(0, 15);
    const queued = RECIPIENTS.slice(15);
    const deliveredIds = await issue(server, delivered);
    await server.deliverAll();
    const queuedIds = await issue(server, queued);

    // The codes: delivered ones from the recording senders, queued ones by opening their sealed
    // payload with the server's secret (the test knows it; the database does not).
    const sent = [...server.email.messages, ...server.sms.messages];
    expect(sent).toHaveLength(15);
    const rows = outbox(server);
    expect(rows).toHaveLength(30);
    const byId = new Map(rows.map((row) => [row.verification_id, row]));
    const secrets = new CodeSecrets([SECRET]);
    const codes = new Map<string, string>();
    for (const message of sent) codes.set(message.verificationId, message.code);
    for (const id of queuedIds) {
      const row = byId.get(id);
      expect(row?.sealed_code, `queued row ${id} keeps its sealed payload`).toEqual(expect.any(String));
      if (!row?.sealed_code) continue;
      const context = outboxSealContext({ ...row, appId: row.app_id, verificationId: id, to: row.recipient });
      codes.set(id, secrets.open(row.sealed_code, context) as string);
    }
    expect(codes.size).toBe(30);
    for (const code of codes.values()) expect(code).toMatch(/^\d{10}$/);

    // Delivered rows have had their sealed payload erased; queued rows still carry it.
    for (const id of deliveredIds) expect(byId.get(id)).toMatchObject({ status: "sent", sealed_code: null });
    for (const id of queuedIds) expect(byId.get(id)?.status).toBe("queued");

    const assertNoCodes = (files: Map<string, Buffer>) => {
      expect([...files.keys()]).toContain("verifyd.db");
      // Control: what the service did write is found, so the search reads the right bytes.
      for (const recipient of RECIPIENTS) expect(filesContaining(files, recipient.to)).not.toEqual([]);
      for (const [id, code] of codes) expect(filesContaining(files, code), `code of ${id}`).toEqual([]);
    };

    // While the server runs, most recent writes sit in the WAL.
    const live = databaseFiles(dataDir as string);
    expect([...live.keys()]).toEqual(
      expect.arrayContaining(["verifyd.db", "verifyd.db-wal", "verifyd.db-shm"]),
    );
    assertNoCodes(live);
    for (const id of queuedIds)
      expect(filesContaining(live, byId.get(id)?.sealed_code as string)).not.toEqual([]);

    // After a clean shutdown the WAL is checkpointed into the database file.
    await server.close();
    t = undefined;
    assertNoCodes(databaseFiles(dataDir as string));
  });

  it("finds the codes with the same search when the dev inbox holds them (the control)", async () => {
    const server = await start(true);
    await issue(server, RECIPIENTS.slice(0, 3));
    await server.deliverAll();
    const inbox = server.server.backend.db.prepare("SELECT code FROM dev_inbox").all() as {
      code: string;
    }[];
    expect(inbox).toHaveLength(3);
    const files = databaseFiles(dataDir as string);
    for (const { code } of inbox) expect(filesContaining(files, code)).not.toEqual([]);
  });
});
