import { randomBytes } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import {
  type ClusterTestServer,
  createTestServer,
  modesToTest,
  type TestServer,
} from "../../../../test/harness.js";
import { sha256Hex } from "../../../core/ids.js";

const MODES = await modesToTest("CloudBase refresh token reuse");

interface Creds {
  access_token: string;
  refresh_token: string;
  sub: string;
}

let t: TestServer | ClusterTestServer | undefined;
afterEach(async () => {
  await t?.close();
  t = undefined;
});

// Regression: a refresh token presented again after its rotation was refused (invalid_grant), but
// the session it had been rotated into lived on: a thief who refreshed first kept it for its whole
// life, and the owner was merely signed out. Now the replay ends that session (RFC 9700 §4.14.2).
// @see RFC 9700 §4.14.2
describe.each(MODES)("CloudBase refresh token reuse ($mode)", ({ cluster }) => {
  function server(): TestServer | ClusterTestServer {
    if (!t) throw new Error("open() first");
    return t;
  }

  /** A fresh server and a signed-in user's credentials, by the SDK's password sign-in. */
  async function signedIn(): Promise<Creds> {
    t = cluster ? await createTestServer({ cluster }) : await createTestServer();
    const app = await server().engine.apps.byId("default");
    if (!app) throw new Error("the app default is missing");
    await server().engine.accounts.create({ app, username: "ann_1", password: "s3cret-pass" });
    const signIn = await post("/auth/v1/signin", { username: "ann_1", password: "s3cret-pass" });
    expect(signIn.statusCode, signIn.body).toBe(200);
    return signIn.json();
  }

  function post(url: string, payload: Record<string, unknown>) {
    return server().fastify.inject({ method: "POST", url, payload });
  }

  const refresh = (refreshToken: string) =>
    post("/auth/v1/token", { grant_type: "refresh_token", refresh_token: refreshToken });

  async function expectRefresh(refreshToken: string): Promise<Creds> {
    const refreshed = await refresh(refreshToken);
    expect(refreshed.statusCode, refreshed.body).toBe(200);
    return refreshed.json();
  }

  async function expectInvalidGrant(refreshToken: string): Promise<void> {
    const refused = await refresh(refreshToken);
    expect(refused.statusCode, refused.body).toBe(400);
    expect(refused.json()).toMatchObject({ error: "invalid_grant", error_code: 4015 });
  }

  async function me(accessToken: string): Promise<number> {
    const answer = await server().fastify.inject({
      method: "GET",
      url: "/auth/v1/user/me",
      headers: { authorization: `Bearer ${accessToken}` },
    });
    return answer.statusCode;
  }

  it("ends the session a replayed refresh token was rotated into, its new tokens with it", async () => {
    const first = await signedIn();
    // Whoever refreshes first (a thief holding a copy, say) gets the session's new tokens.
    const second = await expectRefresh(first.refresh_token);
    expect(await me(second.access_token)).toBe(200);

    await expectInvalidGrant(first.refresh_token);

    expect(await me(second.access_token)).toBe(401);
    await expectInvalidGrant(second.refresh_token);
    // and replaying it again finds nothing more to end
    await expectInvalidGrant(first.refresh_token);
  });

  it("keeps a chain of refreshes working, each token once", async () => {
    const first = await signedIn();
    const second = await expectRefresh(first.refresh_token);
    const third = await expectRefresh(second.refresh_token);
    const fourth = await expectRefresh(third.refresh_token);
    expect(fourth.sub).toBe(first.sub);
    expect(await me(fourth.access_token)).toBe(200);
    expect(await me(third.access_token)).toBe(401);
    await expectRefresh(fourth.refresh_token);
  });

  // Regression: only the token the last rotation replaced was recognised. A thief who refreshed a
  // stolen token twice before its owner came back kept the session, and the owner was merely
  // signed out. Every token of a session now names its chain.
  it("ends the session when a token replaced several rotations ago comes back", async () => {
    const first = await signedIn();
    const second = await expectRefresh(first.refresh_token);
    const third = await expectRefresh(second.refresh_token);
    expect(await me(third.access_token)).toBe(200);

    await expectInvalidGrant(first.refresh_token);

    expect(await me(third.access_token)).toBe(401);
    await expectInvalidGrant(third.refresh_token);
  });

  it("signs out, by a token replaced several rotations ago, the session it led to", async () => {
    const first = await signedIn();
    const second = await expectRefresh(first.refresh_token);
    const third = await expectRefresh(second.refresh_token);

    const revoked = await post("/auth/v1/revoke", { token: first.refresh_token });
    expect(revoked.statusCode, revoked.body).toBe(200);

    expect(await me(third.access_token)).toBe(401);
  });

  it("gives a session opened before chains one at its first refresh, and still catches the replay", async () => {
    const first = await signedIn();
    // A token as builds before chains minted it (`rt_` and 192 random bits), its session stored
    // without a chain.
    const { accounts, clock } = server().engine.deps;
    const session = await accounts.findSession("default", sha256Hex(first.refresh_token), clock.nowMs());
    if (!session) throw new Error("the signed-in session is missing");
    const legacy = `rt_${randomBytes(24).toString("base64url")}`;
    const { chain: _chain, ...unchained } = session;
    await accounts.createSession({ ...unchained, tokenHash: sha256Hex(legacy) });

    const second = await expectRefresh(legacy);
    expect(second.refresh_token).toMatch(/^rt_[\w-]{22}\.[\w-]{32}$/);
    const third = await expectRefresh(second.refresh_token);
    await expectInvalidGrant(second.refresh_token);
    expect(await me(third.access_token)).toBe(401);

    // and the token before chains, replayed after its one rotation, is caught as before
    const again = await expectRefresh(first.refresh_token);
    const legacyTwo = `rt_${randomBytes(24).toString("base64url")}`;
    await accounts.createSession({ ...unchained, tokenHash: sha256Hex(legacyTwo) });
    const rotated = await expectRefresh(legacyTwo);
    await expectInvalidGrant(legacyTwo);
    expect(await me(rotated.access_token)).toBe(401);
    expect(await me(again.access_token)).toBe(200);
  });

  it("signs out, by a refresh token already rotated, the session it was rotated into", async () => {
    const first = await signedIn();
    const second = await expectRefresh(first.refresh_token);

    const revoked = await post("/auth/v1/revoke", { token: first.refresh_token });
    expect(revoked.statusCode, revoked.body).toBe(200);

    expect(await me(second.access_token)).toBe(401);
    await expectInvalidGrant(second.refresh_token);
  });

  it("ends the session when refreshes of one token are sent at once: the losers look like a replay", async () => {
    const first = await signedIn();
    const answers = await Promise.all(Array.from({ length: 5 }, () => refresh(first.refresh_token)));
    expect(answers.map((answer) => answer.statusCode).sort()).toEqual([200, 400, 400, 400, 400]);
    const winner = answers.find((answer) => answer.statusCode === 200)?.json() as Creds;
    expect(await me(winner.access_token)).toBe(401);
    await expectInvalidGrant(winner.refresh_token);
  });
});
