import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { createTestServer, type TestServer } from "../harness.js";

/**
 * Issue 2 "Done means": races over HTTP on the real SQLite store. The server listens on a real
 * socket and 50 requests are in flight at once, so they interleave at every `await` of the
 * request path exactly as production traffic does.
 */

const N = 50;
const ANN = "ann@example.com";

let t: TestServer | undefined;
afterEach(async () => {
  await t?.close();
  t = undefined;
});

interface Answer {
  status: number;
  retryAfter: string | null;
  body: Record<string, unknown>;
}

async function listen(): Promise<{
  server: TestServer;
  call: (path: string, body: unknown, headers?: Record<string, string>) => Promise<Answer>;
}> {
  t = await createTestServer();
  await t.fastify.listen({ host: "127.0.0.1", port: 0 });
  const { port } = t.fastify.server.address() as AddressInfo;
  const call = async (path: string, body: unknown, headers: Record<string, string> = {}): Promise<Answer> => {
    const response = await fetch(`http://127.0.0.1:${port}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body: JSON.stringify(body),
    });
    return {
      status: response.status,
      retryAfter: response.headers.get("retry-after"),
      body: (await response.json()) as Record<string, unknown>,
    };
  };
  return { server: t, call };
}

function tally(answers: Answer[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const answer of answers) {
    const key = `${answer.status} ${String(answer.body.code ?? answer.body.status ?? "")}`.trim();
    counts[key] = (counts[key] ?? 0) + 1;
  }
  return counts;
}

async function issue(server: TestServer, call: Awaited<ReturnType<typeof listen>>["call"]) {
  const sent = await call("/v1/verifications", { channel: "email", to: ANN, purpose: "sign_in" });
  expect(sent.status).toBe(201);
  await server.deliverAll();
  return { id: sent.body.id as string, code: server.email.lastCodeFor(ANN) as string };
}

describe("races over HTTP", () => {
  it(`approves exactly one of ${N} parallel checks with the right code`, async () => {
    const { server, call } = await listen();
    const { id, code } = await issue(server, call);
    const answers = await Promise.all(
      Array.from({ length: N }, () => call("/v1/verifications/check", { id, code })),
    );
    const approved = answers.filter((answer) => answer.status === 200);
    expect(approved, JSON.stringify(tally(answers))).toHaveLength(1);
    expect(approved[0]?.body).toMatchObject({ id, status: "approved", token: expect.any(String) });
    // The others lost the race: the code was used, or their attempts were counted first and ran out.
    for (const answer of answers.filter((each) => each.status !== 200)) {
      expect(["410 CODE_ALREADY_USED", "429 TOO_MANY_ATTEMPTS"]).toContain(
        `${answer.status} ${answer.body.code}`,
      );
    }
    const tokens = server.server.backend.db.prepare("SELECT count(*) AS n FROM tokens").get() as {
      n: number;
    };
    expect(tokens.n).toBe(1);
  });

  it(`accepts exactly one of ${N} parallel sends to one recipient`, async () => {
    const { server, call } = await listen();
    const answers = await Promise.all(
      Array.from({ length: N }, () =>
        call("/v1/verifications", { channel: "email", to: ANN, purpose: "sign_in" }),
      ),
    );
    expect(tally(answers)).toEqual({ "201 pending": 1, "429 RESEND_TOO_SOON": N - 1 });
    for (const answer of answers.filter((each) => each.status === 429)) {
      // the clock is fixed: every refusal is 60 s from the one accepted send
      expect(answer.retryAfter).toBe("60");
      expect(answer.body.retry_after).toBe(60);
    }
    const db = server.server.backend.db;
    expect((db.prepare("SELECT count(*) AS n FROM codes").get() as { n: number }).n).toBe(1);
    expect((db.prepare("SELECT count(*) AS n FROM outbox").get() as { n: number }).n).toBe(1);
  });

  it(`kills the code after exactly 5 of ${N} parallel wrong guesses, and the right code then fails`, async () => {
    const { server, call } = await listen();
    const { id, code } = await issue(server, call);
    const wrong = code === "000000" ? "000001" : "000000";
    const answers = await Promise.all(
      Array.from({ length: N }, () => call("/v1/verifications/check", { id, code: wrong })),
    );
    expect(tally(answers)).toEqual({ "422 CODE_INVALID": 5, "429 TOO_MANY_ATTEMPTS": N - 5 });
    const remaining = answers
      .filter((answer) => answer.status === 422)
      .map((answer) => answer.body.attempts_remaining)
      .sort();
    expect(remaining).toEqual([0, 1, 2, 3, 4]);
    const right = await call("/v1/verifications/check", { id, code });
    expect(right.status).toBe(429);
    expect(right.body.code).toBe("TOO_MANY_ATTEMPTS");
    const row = server.server.backend.db.prepare("SELECT attempts, status FROM codes WHERE id = ?").get(id);
    expect(row).toEqual({ attempts: 5, status: "pending" });
  });

  it(`redeems a token for exactly one of ${N} parallel callers`, async () => {
    const { server, call } = await listen();
    const { id, code } = await issue(server, call);
    const { token } = (await call("/v1/verifications/check", { id, code })).body;
    const answers = await Promise.all(Array.from({ length: N }, () => call("/v1/tokens/redeem", { token })));
    expect(tally(answers)).toEqual({ "200": 1, "404 TOKEN_INVALID": N - 1 });
  });

  it(`answers ${N} parallel sends with one Idempotency-Key with one verification`, async () => {
    const { server, call } = await listen();
    const answers = await Promise.all(
      Array.from({ length: N }, () =>
        call(
          "/v1/verifications",
          { channel: "email", to: ANN, purpose: "sign_in" },
          { "idempotency-key": "k-1" },
        ),
      ),
    );
    expect(tally(answers)).toEqual({ "201 pending": N });
    expect(new Set(answers.map((answer) => answer.body.id)).size).toBe(1);
    await server.deliverAll();
    expect(server.email.messages).toHaveLength(1);
  });
});
