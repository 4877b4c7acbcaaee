import { afterEach, describe, expect, it } from "vitest";
import {
  type ClusterTestServer,
  createTestServer,
  modesToTest,
  type TestServer,
} from "../../../../test/harness.js";

const MODES = await modesToTest("Fresns edit as an account look-up");

let t: TestServer | ClusterTestServer | undefined;
afterEach(async () => {
  await t?.close();
  t = undefined;
});

// Regression: PUT account/edit looked the new contact up before any code, so a logged-in caller
// with made-up codes learned whether any email had an account (34205 taken, 33203 free), without
// limit, in both modes. Now a taken contact is told only once its code checks.
// @see the reviewer's report: 100 probes, 34205 / 33203 every time, nothing refused
describe.each(MODES)("Fresns edit tells no prober whether a contact is taken ($mode)", ({ cluster }) => {
  it("answers a taken and a free email alike (33203) to made-up codes, however often", async () => {
    t = cluster ? await createTestServer({ cluster }) : await createTestServer();
    const server = t;
    const app = await server.engine.apps.byId("default");
    if (!app) throw new Error("the app default is missing");
    await server.engine.accounts.create({ app, email: "taken@example.com" });
    const prober = await server.engine.accounts.create({ app, email: "prober@example.com" });
    const session = await server.engine.accounts.createSession(app, prober, 3600, "fresns");
    const probe = (newEmail: string) =>
      server.fastify.inject({
        method: "PUT",
        url: "/api/v2/account/edit",
        headers: { "x-fresns-aid": prober.id, "x-fresns-aid-token": session.token },
        payload: { codeType: "email", verifyCode: "123456", newEmail, newVerifyCode: "123456" },
      });
    // past the 20 look-ups a client gets in 10 minutes: none of these is one
    for (let round = 0; round < 12; round += 1) {
      for (const email of ["taken@example.com", "free@example.com"]) {
        const answer = await probe(email);
        expect(answer.statusCode).toBe(200);
        expect(answer.json().code, `${email} in round ${round}`).toBe(33203);
      }
    }
  });
});
