import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { backendAddress, throughProxy } from "../../test/cluster/backends.js";
import { eventually, killAll, postJson, startServer } from "../../test/e2e/verifyd-process.js";
import { createTestServer, modesToTest, type TestServer } from "../../test/harness.js";
import { type SmtpRecorder, startSmtpRecorder } from "../../test/servers/smtp-recorder.js";
import { startTcpProxy } from "../../test/servers/tcp-proxy.js";
import { FACES } from "../core/types.js";

// GET /metrics over HTTP, on a real SQLite server: the harness's (delivery on the test's thread,
// driven by hand), and the compiled server as `npm start` runs it (delivery in its own thread).

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** The samples of a scrape in Prometheus's text format. */
function parseScrape(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match) throw new Error(`not a sample: ${line}`);
    const labels: Record<string, string> = {};
    for (const pair of (match[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[pair[1] as string] = pair[2] as string;
    }
    samples.push({ name: match[1] as string, labels, value: Number(match[3]) });
  }
  return samples;
}

/** verifyd's own series (not the process metrics), as `name{labels} value` lines, sorted. */
function ownSeries(samples: Sample[], names: string[]): string[] {
  return samples
    .filter((sample) => names.includes(sample.name))
    .map((sample) => {
      const labels = Object.entries(sample.labels).map(([key, value]) => `${key}="${value}"`);
      return `${sample.name}{${labels.join(",")}} ${sample.value}`;
    })
    .sort();
}

const COUNTERS = [
  "verifyd_send_decisions_total",
  "verifyd_refusals_total",
  "verifyd_checks_approved_total",
  "verifyd_deliveries_total",
];

const NO_CAPTCHA = { id: "default", abuse: { captcha: { native: "never" as const } } };
let client = 0;
/** Each send from a client address of its own, so per-IP limits stay out of the counts. */
const fromNewClient = () => ({
  "x-forwarded-for": `198.51.${Math.floor(client / 250) % 250}.${client++ % 250}`,
});

describe("GET /metrics (dev mode)", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await createTestServer({ env: { VERIFYD_TRUST_PROXY: "127.0.0.1" }, apps: [NO_CAPTCHA] });
  });
  afterAll(async () => {
    await t.close();
  });

  const send = (to: string, channel = "email") =>
    t.fastify.inject({
      method: "POST",
      url: "/v1/verifications",
      headers: fromNewClient(),
      payload: { channel, to, purpose: "sign_in" },
    });
  const check = (id: string, code: string) =>
    t.fastify.inject({ method: "POST", url: "/v1/verifications/check", payload: { id, code } });
  const scrape = async () => {
    const reply = await t.fastify.inject({ method: "GET", url: "/metrics" });
    expect(reply.statusCode).toBe(200);
    expect(reply.headers["content-type"]).toMatch(/^text\/plain; version=0\.0\.4/);
    return parseScrape(reply.body);
  };
  const queued = async () =>
    (await scrape()).find((sample) => sample.name === "verifyd_outbox_queued")?.value;

  it("counts send decisions, refusals, approvals and deliveries exactly, and the queue as it fills and drains", async () => {
    const first = await send("ann@example.com");
    const second = await send("bob@example.com");
    expect([first.statusCode, second.statusCode]).toEqual([201, 201]);
    // too soon for the same recipient: refused, and counted as a decision and as a refusal
    const again = await send("ann@example.com");
    expect(again.statusCode).toBe(429);
    const refusedCode = again.json<{ code: string }>().code;
    expect(await queued()).toBe(2);

    t.email.failures = 1; // the first try fails for now and is retried
    await t.deliverAll();
    expect(await queued()).toBe(1);
    t.clock.advanceSeconds(60);
    await t.deliverAll();
    expect(await queued()).toBe(0);
    const id = first.json<{ id: string }>().id;
    const code = t.email.lastCodeFor("ann@example.com") as string;
    const wrong = String((Number(code) + 1) % 1_000_000).padStart(6, "0");
    expect((await check(id, wrong)).statusCode).toBe(422);
    expect((await check(id, code)).statusCode).toBe(200);
    expect((await t.fastify.inject({ method: "GET", url: "/v1/nothing-here" })).statusCode).toBe(404);

    const samples = await scrape();
    expect(ownSeries(samples, COUNTERS)).toEqual(
      [
        'verifyd_send_decisions_total{app="default",face="native",channel="email",decision="accepted"} 2',
        'verifyd_send_decisions_total{app="default",face="native",channel="email",decision="rate_limited"} 1',
        `verifyd_refusals_total{face="native",app="default",code="${refusedCode}"} 1`,
        'verifyd_refusals_total{face="native",app="default",code="CODE_INVALID"} 1',
        'verifyd_refusals_total{face="native",app="-",code="ROUTE_NOT_FOUND"} 1',
        'verifyd_checks_approved_total{app="default"} 1',
        'verifyd_deliveries_total{channel="email",provider="recording-email",outcome="retried"} 1',
        'verifyd_deliveries_total{channel="email",provider="recording-email",outcome="sent"} 2',
      ].sort(),
    );
    expect(ownSeries(samples, ["verifyd_provider_circuit_open", "verifyd_build_info"])).toEqual([
      'verifyd_build_info{version="0.1.0"} 1',
      'verifyd_provider_circuit_open{provider="recording-email"} 0',
      'verifyd_provider_circuit_open{provider="recording-sms"} 0',
    ]);
    // prom-client's process metrics, under verifyd's prefix
    expect(samples.some((sample) => sample.name === "verifyd_process_cpu_user_seconds_total")).toBe(true);
  });

  it("adds no series for a flood of recipients, addresses and prefixes: only its bounded labels", async () => {
    const before = new Set(ownSeries(await scrape(), COUNTERS).map((line) => line.replace(/ \S+$/, "")));
    // each prefix with the digits its country's mobiles take after it
    const prefixes: [string, number][] = [
      ["+86138", 8],
      ["+86139", 8],
      ["+1415", 7],
      ["+447700", 6],
      ["+234803", 7],
      ["+880171", 7],
    ];
    const recipients: string[] = [];
    for (let index = 0; index < 240; index++) {
      const [prefix, digits] = prefixes[index % prefixes.length] as [string, number];
      const phone = `${prefix}${String(2 * 10 ** (digits - 1) + index)}`;
      const to = index % 2 === 0 ? `flood-${index}@example.com` : phone;
      recipients.push(to);
      await send(to, index % 2 === 0 ? "email" : "sms");
      // and a few refused for each: too soon again, a malformed one
      if (index % 10 === 0) await send(to, index % 2 === 0 ? "email" : "sms");
      if (index % 20 === 0) await send(`not-an-address-${index}`);
    }
    await t.deliverAll();
    const scraped = await t.fastify.inject({ method: "GET", url: "/metrics" });
    for (const text of ["flood-", "not-an-address", "198.51.", ...prefixes.map(([prefix]) => prefix)]) {
      expect(scraped.body).not.toContain(text);
    }
    const samples = parseScrape(scraped.body);
    const allowed: Record<string, (value: string) => boolean> = {
      app: (value) => value === "default" || value === "-",
      face: (value) => (FACES as readonly string[]).includes(value),
      channel: (value) => ["email", "sms", "-"].includes(value),
      decision: (value) =>
        [
          "accepted",
          "rate_limited",
          "captcha_required",
          "denied",
          "captcha_failed",
          "account_refused",
        ].includes(value),
      code: (value) => /^[A-Z_]+$/.test(value),
      provider: (value) => ["recording-email", "recording-sms", "none"].includes(value),
      outcome: (value) => ["sent", "retried", "failed", "dropped"].includes(value),
    };
    const added = ownSeries(samples, COUNTERS)
      .map((line) => line.replace(/ \S+$/, ""))
      .filter((series) => !before.has(series));
    for (const sample of samples.filter((each) => COUNTERS.includes(each.name))) {
      for (const [label, value] of Object.entries(sample.labels)) {
        expect(allowed[label]?.(value), `${sample.name} ${label}="${value}"`).toBe(true);
      }
    }
    // 240 recipients, 240 addresses, 6 prefixes: a handful of series, one per decision and code
    expect(added.length).toBeLessThanOrEqual(12);
    expect(samples.length).toBeLessThan(200);
  });
});

// The cluster's store approves in two steps (`approve`, not SQLite's one-step check), and its
// outbox is PostgreSQL's.
describe.each(await modesToTest("GET /metrics counts"))("GET /metrics counts ($mode mode)", ({ cluster }) => {
  it("a send, its delivery, a wrong check and an approval", async () => {
    const env = { VERIFYD_TRUST_PROXY: "127.0.0.1" };
    const t = cluster
      ? await createTestServer({ env, apps: [NO_CAPTCHA], cluster })
      : await createTestServer({ env, apps: [NO_CAPTCHA] });
    try {
      const scrape = async () =>
        parseScrape((await t.fastify.inject({ method: "GET", url: "/metrics" })).body);
      const queued = async () =>
        (await scrape()).find((sample) => sample.name === "verifyd_outbox_queued")?.value;
      const sent = await t.fastify.inject({
        method: "POST",
        url: "/v1/verifications",
        headers: fromNewClient(),
        payload: { channel: "email", to: "cy@example.com", purpose: "sign_in" },
      });
      expect(sent.statusCode).toBe(201);
      expect(await queued()).toBe(1);
      await t.deliverAll();
      expect(await queued()).toBe(0);
      const id = sent.json<{ id: string }>().id;
      const code = t.email.lastCodeFor("cy@example.com") as string;
      const check = (value: string) =>
        t.fastify.inject({ method: "POST", url: "/v1/verifications/check", payload: { id, code: value } });
      expect((await check(code === "000000" ? "000001" : "000000")).statusCode).toBe(422);
      expect((await check(code)).statusCode).toBe(200);
      expect(ownSeries(await scrape(), COUNTERS)).toEqual([
        'verifyd_checks_approved_total{app="default"} 1',
        'verifyd_deliveries_total{channel="email",provider="recording-email",outcome="sent"} 1',
        'verifyd_refusals_total{face="native",app="default",code="CODE_INVALID"} 1',
        'verifyd_send_decisions_total{app="default",face="native",channel="email",decision="accepted"} 1',
      ]);
    } finally {
      await t.close();
    }
  });
});

// Regression: with PostgreSQL cut off, every scrape answered `verifyd_outbox_queued 0` (a gauge
// reset shows 0), so a backlog alert cleared exactly when the database failed.
describe.each((await modesToTest("GET /metrics while the store is away")).filter((mode) => mode.cluster))(
  "GET /metrics while the store is away ($mode mode)",
  ({ cluster }) => {
    /** A server that reaches PostgreSQL through a proxy (the harness's own client does not), and its scrape. */
    async function behindProxy() {
      if (!cluster) throw new Error("cluster mode only");
      const proxy = await startTcpProxy(backendAddress(cluster.databaseUrl, 5432));
      const env = {
        VERIFYD_TRUST_PROXY: "127.0.0.1",
        VERIFYD_DATABASE_URL: throughProxy(cluster.databaseUrl, proxy.port),
      };
      const t = await createTestServer({ env, apps: [NO_CAPTCHA], cluster });
      const scrape = async () => {
        const reply = await t.fastify.inject({ method: "GET", url: "/metrics" });
        expect(reply.statusCode).toBe(200);
        return parseScrape(reply.body);
      };
      const close = async () => {
        await t.close();
        await proxy.close();
      };
      return { t, proxy, scrape, close };
    }

    it("leaves the queued count out, says it could not count, and shows it again once back", async () => {
      const { t, proxy, scrape, close } = await behindProxy();
      try {
        const outbox = (samples: Sample[]) =>
          ownSeries(samples, ["verifyd_outbox_queued", "verifyd_outbox_count_failed"]);
        for (const to of ["q1@example.com", "q2@example.com"]) {
          const sent = await t.fastify.inject({
            method: "POST",
            url: "/v1/verifications",
            headers: fromNewClient(),
            payload: { channel: "email", to, purpose: "sign_in" },
          });
          expect(sent.statusCode).toBe(201);
        }
        expect(ownSeries(await scrape(), ["verifyd_outbox_queued"])).toEqual(["verifyd_outbox_queued{} 2"]);
        proxy.cut();
        for (let scrapes = 0; scrapes < 3; scrapes++) {
          const samples = await scrape();
          expect(ownSeries(samples, ["verifyd_outbox_queued"])).toEqual([]);
          expect(outbox(samples)).toEqual(["verifyd_outbox_count_failed{} 1"]);
          // the counts kept in memory are served as ever
          expect(ownSeries(samples, ["verifyd_send_decisions_total"])).toHaveLength(1);
        }
        proxy.restore();
        const back = await eventually(
          async () => {
            const series = outbox(await scrape());
            return series.includes("verifyd_outbox_queued{} 2") ? series : undefined;
          },
          10_000,
          "the queued count back",
        );
        expect(back).toEqual(["verifyd_outbox_count_failed{} 0", "verifyd_outbox_queued{} 2"]);
      } finally {
        await close();
      }
    });

    // Regression: on a stalled PostgreSQL (its connections silent) the queued count waited out the
    // driver's timeouts, and each scrape took 6 s: past a Prometheus scrape_timeout every series was lost.
    it("answers within a second or so when the store's connections go silent, the count left out", async () => {
      const { proxy, scrape, close } = await behindProxy();
      try {
        // a scrape first, so the pool holds the connection the next count takes
        expect(ownSeries(await scrape(), ["verifyd_outbox_count_failed"])).toEqual([
          "verifyd_outbox_count_failed{} 0",
        ]);
        proxy.freeze();

        const startedAtMs = performance.now();
        const samples = await scrape();

        expect(performance.now() - startedAtMs).toBeLessThan(1_800);
        expect(ownSeries(samples, ["verifyd_outbox_queued", "verifyd_outbox_count_failed"])).toEqual([
          "verifyd_outbox_count_failed{} 1",
        ]);
        expect(samples.some((sample) => sample.name === "verifyd_build_info")).toBe(true);
      } finally {
        await close();
      }
    });
  },
);

describe("GET /metrics (production mode)", () => {
  const production = { VERIFYD_MODE: "production", VERIFYD_SECRET: "metrics-test-secret-0123456789" };
  const servers: TestServer[] = [];
  afterAll(async () => {
    await Promise.all(servers.map((server) => server.close()));
  });
  const start = async (env: Record<string, string>) => {
    const server = await createTestServer({ env: { ...production, ...env } });
    servers.push(server);
    return server;
  };

  it("is no route without a token: 404 in the shape of any unknown route", async () => {
    const t = await start({});
    const metrics = await t.fastify.inject({ method: "GET", url: "/metrics" });
    const unknown = await t.fastify.inject({ method: "GET", url: "/metricz" });
    expect(metrics.statusCode).toBe(404);
    expect(metrics.headers["content-type"]).toBe(unknown.headers["content-type"]);
    expect(metrics.json()).toEqual({ ...unknown.json(), detail: "No route GET /metrics" });
  });

  it("answers 401 without the configured token or with another, 200 with it", async () => {
    const token = "scrape-token-0123456789abcdef";
    const t = await start({ VERIFYD_METRICS_TOKEN: token });
    const scrape = (authorization?: string) =>
      t.fastify.inject({
        method: "GET",
        url: "/metrics",
        headers: authorization === undefined ? {} : { authorization },
      });
    for (const authorization of [undefined, `Bearer ${token}x`, `Bearer ${token.slice(0, -1)}`, token]) {
      const refused = await scrape(authorization);
      expect(refused.statusCode, String(authorization)).toBe(401);
      expect(refused.headers["www-authenticate"]).toBe("Bearer");
      expect(refused.json()).toMatchObject({ status: 401, code: "UNAUTHENTICATED" });
    }
    const served = await scrape(`Bearer ${token}`);
    expect(served.statusCode).toBe(200);
    const samples = parseScrape(served.body);
    // the refused scrapes were refusals like any other
    expect(ownSeries(samples, ["verifyd_refusals_total"])).toEqual([
      'verifyd_refusals_total{face="native",app="-",code="UNAUTHENTICATED"} 4',
    ]);
  });
});

describe("GET /metrics of the compiled server, delivering from its own thread", () => {
  let recorders: SmtpRecorder[] = [];
  const dirs: string[] = [];
  const tempDir = () => {
    const dir = mkdtempSync(join(tmpdir(), "verifyd-metrics-"));
    dirs.push(dir);
    return dir;
  };
  afterEach(async () => {
    await killAll();
    await Promise.all(recorders.map((recorder) => recorder.close()));
    recorders = [];
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });
  const startWithSmtp = async (options: Parameters<typeof startSmtpRecorder>[0]) => {
    const recorder = await startSmtpRecorder(options);
    recorders.push(recorder);
    const server = await startServer({
      VERIFYD_DATA_DIR: tempDir(),
      VERIFYD_SMTP_URL: recorder.url,
      VERIFYD_EMAIL_FROM: "codes@example.com",
      VERIFYD_TRUST_PROXY: "127.0.0.1",
    });
    const send = (to: string) =>
      postJson(
        `${server.url}/v1/verifications`,
        { channel: "email", to, purpose: "sign_in" },
        fromNewClient(),
      );
    const scrape = async () => parseScrape(await (await fetch(`${server.url}/metrics`)).text());
    return { recorder, server, send, scrape };
  };

  it("counts what the delivery thread sent and failed, sent over to the server within a second", async () => {
    const { recorder, send, scrape } = await startWithSmtp({ rejectRecipients: ["nobody@example.com"] });
    for (const to of ["ann@example.com", "bob@example.com", "nobody@example.com"]) {
      expect((await send(to)).status).toBe(201);
    }
    expect((await send("ann@example.com")).status).toBe(429);
    const wanted = [
      'verifyd_deliveries_total{channel="email",provider="smtp",outcome="failed"} 1',
      'verifyd_deliveries_total{channel="email",provider="smtp",outcome="sent"} 2',
    ];
    let last: Sample[] = [];
    await eventually(
      async () => {
        last = await scrape();
        const deliveries = ownSeries(last, ["verifyd_deliveries_total"]);
        return JSON.stringify(deliveries) === JSON.stringify(wanted) ? deliveries : undefined;
      },
      10_000,
      "the thread's delivery counts",
      () => ownSeries(last, COUNTERS).join("\n"),
    );
    expect(recorder.messages).toHaveLength(2);
    expect(ownSeries(last, ["verifyd_send_decisions_total", "verifyd_provider_circuit_open"])).toEqual([
      'verifyd_provider_circuit_open{provider="dev"} 0',
      'verifyd_provider_circuit_open{provider="smtp"} 0',
      'verifyd_send_decisions_total{app="default",face="native",channel="email",decision="accepted"} 3',
      'verifyd_send_decisions_total{app="default",face="native",channel="email",decision="rate_limited"} 1',
    ]);
    expect(last.find((sample) => sample.name === "verifyd_outbox_queued")?.value).toBe(0);
  });

  it("shows a provider's circuit open, its tries retried, and the messages waiting meanwhile", async () => {
    const { send, scrape } = await startWithSmtp({ dropConnections: true });
    // five failures in a row open the circuit (DEFAULT_BREAKER_FAILURES)
    for (let index = 0; index < 5; index++)
      expect((await send(`down-${index}@example.com`)).status).toBe(201);
    let last: Sample[] = [];
    await eventually(
      async () => {
        last = await scrape();
        const open = last.find(
          (sample) => sample.name === "verifyd_provider_circuit_open" && sample.labels.provider === "smtp",
        );
        return open?.value === 1 ? open : undefined;
      },
      15_000,
      "the smtp circuit to open",
      () => ownSeries(last, [...COUNTERS, "verifyd_provider_circuit_open"]).join("\n"),
    );
    const retried = last.find(
      (sample) =>
        sample.name === "verifyd_deliveries_total" &&
        sample.labels.provider === "smtp" &&
        sample.labels.outcome === "retried",
    );
    expect(retried?.value).toBeGreaterThanOrEqual(5);
    expect(last.find((sample) => sample.name === "verifyd_outbox_queued")?.value).toBe(5);
  });
});
