/**
 * Two sends under one Idempotency-Key at once, for different recipients: the one that does not
 * get the key is another request, refused 400 naming Idempotency-Key, in each mode. In cluster
 * mode the first send's outbox commit is held, so the second comes while it is in progress.
 */
import type { LightMyRequestResponse } from "fastify";
import { afterEach, describe, expect, it } from "vitest";
import { holdOutboxCommits } from "../../../test/cluster/held-outbox.js";
import {
  type ClusterTestServer,
  createTestServer,
  modesToTest,
  type TestServer,
} from "../../../test/harness.js";

const MODES = await modesToTest("a keyed send with another body at once");

let t: TestServer | ClusterTestServer | undefined;
afterEach(async () => {
  await t?.close();
  t = undefined;
});

describe.each(MODES)("a keyed send with another body at once ($mode)", ({ cluster }) => {
  // Regression: in cluster mode, while the first send's outbox row was being committed, a retry
  // under its key with another body was told 503 STORE_UNAVAILABLE (try again shortly) before
  // its body was compared; once the commit was done the same retry got 400.
  it("refuses the other request 400 naming Idempotency-Key, not 503", async () => {
    const apps = [{ id: "default", abuse: { captcha: { native: "never" as const } } }];
    const server = cluster ? await createTestServer({ cluster, apps }) : await createTestServer({ apps });
    t = server;
    const send = (to: string) =>
      server.fastify.inject({
        method: "POST",
        url: "/v1/verifications",
        headers: { "idempotency-key": "one-key" },
        payload: { channel: "email", to, purpose: "sign_in" },
      });

    let answers: LightMyRequestResponse[];
    if ("stores" in server) {
      // The outbox held, as on a slow database: the first send has its code in Redis and waits
      // for its row's commit when the other comes.
      const hold = await holdOutboxCommits(server.stores.postgres);
      const first = send("ann@example.com");
      await hold.sendWaiting();
      const other = await send("bob@example.com");
      await hold.release();
      answers = [await first, other];
    } else {
      answers = await Promise.all([send("ann@example.com"), send("bob@example.com")]);
    }

    const statuses = answers.map((answer) => answer.statusCode);
    expect(statuses.toSorted(), answers.map((answer) => answer.body).join("\n")).toEqual([201, 400]);
    const refused = answers.find((answer) => answer.statusCode === 400);
    expect(refused?.json()).toMatchObject({ code: "VALIDATION_FAILED", field: "Idempotency-Key" });
    // In cluster mode the held send is the first: the other one came while it was committing.
    if (cluster) expect(statuses).toEqual([201, 400]);
  });
});
