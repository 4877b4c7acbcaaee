import { afterEach, describe, expect, it } from "vitest";
import { createTestServer, type TestServer } from "../../../../test/harness.js";

const APP_ORIGIN = "https://shop.example";
const VISITOR = "198.51.100.40";

let t: TestServer | undefined;
afterEach(async () => {
  await t?.close();
  t = undefined;
});

/** `POST /auth/v1/captcha/data` from the visitor's browser (or a client that is none), with `headers`. */
function draw(headers: Record<string, string>) {
  if (!t) throw new Error("no server");
  return t.fastify.inject({
    method: "POST",
    url: "/auth/v1/captcha/data?client_id=shop",
    headers: { "content-type": "text/plain", ...headers },
    payload: "{}",
    remoteAddress: VISITOR,
  });
}

describe("POST /auth/v1/captcha/data from another site", () => {
  // Regression: the Origin was parsed before it was compared, and one without a host
  // (`capacitor://localhost`, which CORS grants as sent) read as "null" and was refused.
  // @see own-commit review 4
  it("draws for an app origin without a host, as CORS grants it", async () => {
    t = await createTestServer({
      apps: [{ id: "shop", corsOrigins: ["capacitor://localhost", APP_ORIGIN] }],
    });
    const webView = {
      "sec-fetch-mode": "cors",
      "sec-fetch-site": "cross-site",
      origin: "capacitor://localhost",
    };
    const drawn = await draw(webView);
    expect(drawn.statusCode, drawn.body).toBe(200);
    expect(drawn.headers["access-control-allow-origin"]).toBe("capacitor://localhost");
    const other = await draw({ ...webView, origin: "ionic://localhost" });
    expect(other.statusCode, other.body).toBe(400);
  });

  // Regression: a no-cors post from any page drew a challenge on its visitor's budget, so 31 of
  // them left the visitor no captcha from the app for 10 minutes. @see captcha review 2 3
  it("draws nothing, so another site cannot spend its visitors' draws", async () => {
    t = await createTestServer({ apps: [{ id: "shop", corsOrigins: [APP_ORIGIN] }] });
    const elsewhere: Record<string, string>[] = [
      { "sec-fetch-mode": "no-cors", "sec-fetch-site": "cross-site", origin: "https://evil.example" },
      { "sec-fetch-mode": "navigate", "sec-fetch-site": "cross-site", origin: "https://evil.example" },
      { "sec-fetch-mode": "no-cors", "sec-fetch-site": "same-origin" },
      { "sec-fetch-mode": "cors", "sec-fetch-site": "cross-site", origin: "https://evil.example" },
      { "sec-fetch-mode": "cors", "sec-fetch-site": "cross-site", origin: "null" },
      { "sec-fetch-mode": "cors", "sec-fetch-site": "cross-site" },
    ];
    for (const headers of elsewhere) {
      for (let i = 0; i < 31; i++) {
        const refused = await draw(headers);
        expect(refused.statusCode, refused.body).toBe(400);
        expect(refused.json()).toMatchObject({ error: "invalid_argument", error_code: 4000 });
      }
    }
    // The visitor's own draws are all there: from the app's page, a same-site one, and a client
    // that is no browser (a mini-program, a server) and says nothing of how it asks.
    const own: Record<string, string>[] = [
      { "sec-fetch-mode": "cors", "sec-fetch-site": "cross-site", origin: APP_ORIGIN },
      { "sec-fetch-mode": "cors", "sec-fetch-site": "same-site", origin: "https://www.shop.example" },
      {},
    ];
    for (let i = 0; i < 30; i++) {
      const drawn = await draw(own[i % own.length] as Record<string, string>);
      expect(drawn.statusCode, drawn.body).toBe(200);
    }
  });
});
