import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
// A cold start (node, migrations, first connections) takes about a second; CI machines are slower.
const START_TIMEOUT_MS = 20_000;
const STOP_TIMEOUT_MS = 5_000;

/** One `node dist/main.js` process (the build vitest's globalSetup made), on its own port. */
export interface ServerProcess {
  url: string;
  child: ChildProcess;
  /** everything the process printed, for failure messages */
  output(): string;
  alive(): boolean;
  stop(): Promise<void>;
}

export interface HttpReply {
  status: number;
  contentType: string;
  body: Record<string, unknown>;
}

/** A free loopback port (VERIFYD_PORT=0 would not tell us which one the server got). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Starts a server process with these VERIFYD_* variables and waits until it answers /healthz. */
export async function startServerProcess(env: Record<string, string>): Promise<ServerProcess> {
  try {
    return await startOnce(env);
  } catch (error) {
    // dist/ is shared: another test run rebuilding it (scripts/build-if-needed.mjs) can catch a
    // module half written. That is the build racing, not the server; one retry rides it out.
    if (!/SyntaxError|ERR_MODULE_NOT_FOUND/.test(String(error))) throw error;
    await sleep(2_000);
    return startOnce(env);
  }
}

async function startOnce(env: Record<string, string>): Promise<ServerProcess> {
  const port = await freePort();
  const dataDir = mkdtempSync(join(tmpdir(), "verifyd-cluster-"));
  // The parent's VERIFYD_* (test URLs among them) must not leak into the server's configuration.
  const inherited = Object.fromEntries(
    Object.entries(process.env).filter(([name]) => !name.startsWith("VERIFYD_")),
  );
  const child = spawn(process.execPath, ["dist/main.js"], {
    cwd: ROOT,
    env: {
      ...inherited,
      VERIFYD_HOST: "127.0.0.1",
      VERIFYD_PORT: String(port),
      VERIFYD_DATA_DIR: dataDir,
      VERIFYD_LOG_LEVEL: "warn",
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout?.on("data", (chunk: Buffer) => {
    output += chunk.toString();
  });
  child.stderr?.on("data", (chunk: Buffer) => {
    output += chunk.toString();
  });
  const url = `http://127.0.0.1:${port}`;
  const process_: ServerProcess = {
    url,
    child,
    output: () => output,
    alive: () => child.exitCode === null && child.signalCode === null,
    async stop() {
      if (process_.alive()) {
        const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
        child.kill("SIGTERM");
        const timer = setTimeout(() => child.kill("SIGKILL"), STOP_TIMEOUT_MS);
        await exited;
        clearTimeout(timer);
      }
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (!process_.alive()) throw new Error(`server exited during startup:\n${output}`);
    try {
      if ((await fetch(`${url}/healthz`)).ok) return process_;
    } catch {
      // not listening yet
    }
    await sleep(50);
  }
  await process_.stop();
  throw new Error(`server did not start within ${START_TIMEOUT_MS} ms:\n${output}`);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * One JSON request; `ip` is sent as X-Forwarded-For (the servers trust 127.0.0.1 as a proxy), and
 * `headers` as they are.
 */
export async function request(
  base: string,
  method: "GET" | "POST",
  path: string,
  options: { body?: unknown; ip?: string; headers?: Record<string, string> } = {},
): Promise<HttpReply> {
  const response = await fetch(`${base}${path}`, {
    method,
    headers: {
      ...(options.body === undefined ? {} : { "content-type": "application/json" }),
      ...(options.ip ? { "x-forwarded-for": options.ip } : {}),
      ...options.headers,
    },
    ...(options.body === undefined ? {} : { body: JSON.stringify(options.body) }),
  });
  const text = await response.text();
  return {
    status: response.status,
    contentType: response.headers.get("content-type") ?? "",
    body: text ? (JSON.parse(text) as Record<string, unknown>) : {},
  };
}

/** Polls until `check` holds or the time is up; returns whether it held. */
export async function eventually(check: () => Promise<boolean>, timeoutMs = 10_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return true;
    await sleep(50);
  }
  return false;
}

let ipCounter = 0;
/** A client address in its own /24, so neither the per-IP nor the per-subnet rules interfere. */
export function distinctIp(): string {
  ipCounter += 1;
  return `10.${(ipCounter >> 8) & 255}.${ipCounter & 255}.${(process.pid % 250) + 1}`;
}

/** The newest code the dev inbox (shared, in PostgreSQL) holds for `to`. */
export async function codeFor(base: string, to: string): Promise<string> {
  let code = "";
  const found = await eventually(async () => {
    const inbox = await request(base, "GET", `/v1/dev/inbox?to=${encodeURIComponent(to)}`);
    const messages = inbox.body.messages as { code: string }[] | undefined;
    code = messages?.[0]?.code ?? "";
    return code !== "";
  });
  if (!found) throw new Error(`no code reached the dev inbox for ${to}`);
  return code;
}
