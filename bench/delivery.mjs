// `node bench/delivery.mjs` (after `npm run build`; BENCH_MAIN names another build's main.js to
// compare it): how fast verifyd drains its outbox to SMTP, measured against a loopback SMTP sink
// (smtp-server) in this process, and compared in the same run with a bare pooled nodemailer loop
// against the same sink (the ceiling for one process talking to that relay with the same pool
// size).
//
//  1. baseline: nodemailer, pool of 5 connections, N messages queued at once, from a child
//     process (the same topology as verifyd's) -> messages/s.
//  2. drain: verifyd accepts N sends while the sink holds its greeting (so the outbox fills), then
//     the sink opens -> messages/s from the outbox to the sink's `250` answers to DATA.
//  3. latency: sends offered at a steady rate -> p50/p99 from the client seeing `201` to the
//     sink answering `250` for that message.
//  4. flood: sends as fast as 50 connections go (autocannon) -> sends accepted per second, and
//     messages the sink answered `250` meanwhile: whether delivery keeps up while requests flood.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import autocannon from "autocannon";
import nodemailer from "nodemailer";
import { SMTPServer } from "smtp-server";
import { freePort, root } from "./lib.mjs";

const MESSAGES = Number(process.env.BENCH_MESSAGES ?? 5_000);
const LATENCY_SECONDS = Number(process.env.BENCH_LATENCY_SECONDS ?? 5);
const SEND_CONCURRENCY = Number(process.env.BENCH_CONNECTIONS ?? 64);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);
// verifyd's SMTP sender keeps five pooled connections; the baseline uses the same.
const POOL_CONNECTIONS = 5;

/** The loopback sink: records when it answered 250 to each message's DATA, by recipient. */
async function startSink() {
  const answeredAt = new Map();
  let gate = null;
  const server = new SMTPServer({
    disabledCommands: ["STARTTLS", "AUTH"],
    authOptional: true,
    disableReverseLookup: true,
    logger: false,
    closeTimeout: 100,
    onConnect(_session, callback) {
      if (gate) gate.push(callback);
      else callback();
    },
    onData(stream, session, callback) {
      stream.on("data", () => {});
      stream.on("end", () => {
        // read the envelope first: it is reset for the next message once DATA is answered
        const recipients = session.envelope.rcptTo.map((recipient) => recipient.address);
        callback();
        const now = performance.now();
        for (const recipient of recipients) answeredAt.set(recipient, now);
      });
    },
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: server.server.address().port,
    answeredAt,
    hold() {
      gate = [];
    },
    release() {
      const waiting = gate ?? [];
      gate = null;
      for (const callback of waiting) callback();
    },
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}

async function waitFor(predicate, timeoutMs, what) {
  const deadline = performance.now() + timeoutMs;
  while (!predicate()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

const text = (i) =>
  `Your verifyd sign-in code is ${String(i % 1_000_000).padStart(6, "0")}. It expires in 10 minutes. If you did not try to sign in, ignore this message.`;

/**
 * The bare loop: nodemailer with the same pool size, every message queued at once, run in a
 * child process so it talks to the sink across processes exactly as verifyd does (a client in the
 * sink's own process measures ~15% faster here, which would flatter the baseline).
 */
async function baselineLoop(port, count, label) {
  const transport = nodemailer.createTransport({
    host: "127.0.0.1",
    port,
    secure: false,
    ignoreTLS: true,
    pool: true,
    maxConnections: POOL_CONNECTIONS,
  });
  const started = performance.now();
  await Promise.all(
    Array.from({ length: count }, (_, i) =>
      // the same shape verifyd sends: From, Message-ID, subject, a text and an HTML part
      transport.sendMail({
        from: "codes@verifyd.example",
        to: `baseline-${label}-${i}@example.com`,
        subject: "Your verifyd sign-in code",
        text: text(i),
        html: `<!doctype html>\n<html><body style="font-family: sans-serif">${text(i)}</body></html>\n`,
        messageId: `<msg_baseline_${label}_${i}@verifyd.example>`,
      }),
    ),
  );
  const seconds = (performance.now() - started) / 1000;
  transport.close();
  return count / seconds;
}

async function baseline(sink, count, label) {
  const child = spawn(
    process.execPath,
    [fileURLToPath(import.meta.url), "--baseline", String(sink.port), String(count), label],
    {
      stdio: ["ignore", "pipe", "inherit"],
    },
  );
  let output = "";
  child.stdout.on("data", (chunk) => {
    output += chunk;
  });
  const code = await new Promise((resolve) => child.on("exit", resolve));
  if (code !== 0) throw new Error(`the baseline loop exited with ${code}`);
  return Number(output.trim());
}

async function startVerifyd(smtpPort) {
  const dataDir = mkdtempSync(join(tmpdir(), "verifyd-bench-delivery-"));
  const config = join(dataDir, "verifyd.json");
  writeFileSync(
    config,
    JSON.stringify({
      apps: [{ id: "default", policy: { perIp: [] }, abuse: { captcha: { native: "never" } } }],
    }),
  );
  const port = await freePort();
  const nodeArgs = process.env.BENCH_NODE_ARGS?.split(" ").filter(Boolean) ?? [];
  const main = process.env.BENCH_MAIN ?? join(root, "dist", "main.js");
  const child = spawn(process.execPath, [...nodeArgs, main], {
    env: {
      ...process.env,
      VERIFYD_DATA_DIR: dataDir,
      VERIFYD_PORT: String(port),
      VERIFYD_CONFIG: config,
      VERIFYD_TRUST_PROXY: "127.0.0.1",
      VERIFYD_LOG_LEVEL: "warn",
      VERIFYD_SECRET: "bench-secret-bench-secret-bench-secret",
      VERIFYD_SMTP_URL: `smtp://127.0.0.1:${smtpPort}`,
      VERIFYD_EMAIL_FROM: "codes@verifyd.example",
    },
    stdio: ["ignore", "ignore", "inherit"],
  });
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 100; i++) {
    try {
      if ((await fetch(`${base}/healthz`)).ok) return { child, base, dataDir };
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  child.kill("SIGKILL");
  throw new Error("verifyd did not start");
}

/** A distinct client address per request, each in its own /24 so subnet rules stay quiet. */
function clientAddress(i) {
  return `${11 + ((i >> 16) % 200)}.${(i >> 8) & 255}.${i & 255}.1`;
}

let sent = 0;
/** Sends one code; resolves with the moment the client saw 201. */
async function send(base, to) {
  const i = sent++;
  const response = await fetch(`${base}/v1/verifications`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-forwarded-for": clientAddress(i) },
    body: JSON.stringify({ channel: "email", to, purpose: "sign_in" }),
  });
  await response.arrayBuffer();
  if (response.status !== 201) throw new Error(`send answered ${response.status}`);
  return performance.now();
}

async function sendMany(base, recipients) {
  let next = 0;
  const lane = async () => {
    while (next < recipients.length) await send(base, recipients[next++]);
  };
  await Promise.all(Array.from({ length: SEND_CONCURRENCY }, lane));
}

async function drain(verifyd, sink, count, round) {
  const recipients = Array.from({ length: count }, (_, i) => `drain-${round}-${i}@example.com`);
  // The sink holds its greeting meanwhile, so the outbox fills (SMTP waits up to 10 s for it).
  sink.hold();
  await sendMany(verifyd.base, recipients);
  const released = performance.now();
  sink.release();
  let answered = 0;
  await waitFor(
    () => {
      while (answered < count && sink.answeredAt.has(recipients[answered])) answered++;
      return answered === count;
    },
    60_000,
    "the outbox to drain",
  );
  const last = Math.max(...recipients.map((to) => sink.answeredAt.get(to)));
  return count / ((last - released) / 1000);
}

async function latency(verifyd, sink, ratePerSecond, seconds) {
  const total = Math.round(ratePerSecond * seconds);
  const acceptedAt = new Map();
  const started = performance.now();
  const pending = [];
  for (let i = 0; i < total; i++) {
    // Open loop: each send starts on schedule whether or not earlier ones have finished.
    const due = started + (i * 1000) / ratePerSecond;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((resolve) => setTimeout(resolve, wait));
    const to = `steady-${i}@example.com`;
    pending.push(send(verifyd.base, to).then((at) => acceptedAt.set(to, at)));
  }
  await Promise.all(pending);
  await waitFor(() => [...acceptedAt.keys()].every((to) => sink.answeredAt.has(to)), 30_000, "steady sends");
  const latencies = [...acceptedAt].map(([to, at]) => sink.answeredAt.get(to) - at).sort((a, b) => a - b);
  const quantile = (q) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))];
  const offered = total / ((performance.now() - started) / 1000);
  return {
    total,
    offered: ratePerSecond,
    achieved: offered,
    p50: quantile(0.5),
    p99: quantile(0.99),
    max: latencies.at(-1),
  };
}

const FLOOD_SECONDS = 5;

/** Sends as fast as the load generator goes: accepted sends/s, and deliveries/s in the meantime. */
async function flood(verifyd, sink) {
  let i = 0;
  const isFlood = (to) => to.startsWith("flood-");
  const result = await autocannon({
    url: verifyd.base,
    connections: 50,
    duration: FLOOD_SECONDS,
    requests: [
      {
        setupRequest: (request) => ({
          ...request,
          method: "POST",
          path: "/v1/verifications",
          headers: { "content-type": "application/json", "x-forwarded-for": clientAddress(++i) },
          body: JSON.stringify({ channel: "email", to: `flood-${i}@example.com`, purpose: "sign_in" }),
        }),
      },
    ],
  });
  const delivered = [...sink.answeredAt.keys()].filter(isFlood).length;
  return {
    accepted: result["2xx"] / result.duration,
    delivered: delivered / result.duration,
    refused: result.non2xx,
  };
}

async function main() {
  const sink = await startSink();
  const verifyd = await startVerifyd(sink.port);
  try {
    // warm both paths (JIT, pools) before measuring
    await baseline(sink, 200, "warm");
    await sendMany(
      verifyd.base,
      Array.from({ length: 200 }, (_, i) => `warm-${i}@example.com`),
    );

    // Alternate the two and keep each one's best round, so a burst of load from elsewhere on the
    // machine does not decide the ratio.
    let baselineRate = 0;
    let drainRate = 0;
    for (let round = 0; round < ROUNDS; round++) {
      baselineRate = Math.max(baselineRate, await baseline(sink, MESSAGES, String(round)));
      drainRate = Math.max(drainRate, await drain(verifyd, sink, MESSAGES, round));
    }
    // BENCH_STEADY_RATE fixes the offered rate, to compare two builds at the same load.
    const steadyRate = Number(process.env.BENCH_STEADY_RATE ?? Math.min(1_000, Math.floor(drainRate * 0.8)));
    const steady = await latency(verifyd, sink, steadyRate, LATENCY_SECONDS);
    const flooded = await flood(verifyd, sink);

    const ratio = drainRate / baselineRate;
    console.log(
      `\nverifyd delivery bench: ${MESSAGES} messages, best of ${ROUNDS} rounds, SMTP pool of ${POOL_CONNECTIONS}, node ${process.version}`,
    );
    console.log("| measure | value | goal |");
    console.log("|---|---:|---|");
    console.log(`| bare pooled nodemailer loop | ${Math.round(baselineRate)} msg/s | |`);
    console.log(`| verifyd outbox -> SMTP 250 | ${Math.round(drainRate)} msg/s | |`);
    console.log(`| ratio | ${ratio.toFixed(2)}x | >= 0.8x |`);
    console.log(
      `| accept (201) -> SMTP 250 at ${steady.offered} msg/s offered (${steady.total} sends) | p50 ${steady.p50.toFixed(1)} ms, p99 ${steady.p99.toFixed(1)} ms, max ${steady.max.toFixed(1)} ms | p99 <= 1000 ms |`,
    );
    console.log(
      `| flood: sends from 50 connections for ${FLOOD_SECONDS} s | ${Math.round(flooded.accepted)} accepted/s, ${Math.round(flooded.delivered)} delivered/s meanwhile | |`,
    );
    if (flooded.refused > 0)
      console.log(`(the flood had ${flooded.refused} answers other than 2xx: not a result)`);
    if (ratio < 0.8 || steady.p99 > 1_000) process.exitCode = 1;
  } finally {
    verifyd.child.kill("SIGTERM");
    await sink.close();
    rmSync(verifyd.dataDir, { recursive: true, force: true });
  }
}

if (process.argv[2] === "--baseline") {
  const [port, count, label] = process.argv.slice(3);
  console.log(await baselineLoop(Number(port), Number(count), label));
} else {
  await main();
}
