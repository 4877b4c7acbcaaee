import { type ChildProcess, spawn } from "node:child_process";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";

/**
 * Runs the real, compiled verifyd (`dist/`, built by the vitest global setup) as a child process,
 * for the tests that need a process boundary: crash durability, configuration errors, the CLI.
 * Every wait is bounded; every process started here is killed by `killAll()`.
 */

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
export const MAIN = fileURLToPath(new URL("../../dist/main.js", import.meta.url));
export const BIN = fileURLToPath(new URL("../../bin/verifyd.js", import.meta.url));

const running = new Set<ChildProcess>();

/** The parent's environment without any VERIFYD_* variable, plus `extra`. */
export function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env))
    if (!name.startsWith("VERIFYD_")) env[name] = value;
  return { ...env, VERIFYD_LOG_LEVEL: "warn", ...extra };
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const address = probe.address();
      probe.close(() =>
        typeof address === "object" && address ? resolve(address.port) : reject(new Error("no port")),
      );
    });
  });
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion (`node <script> ...args`), killing it after `timeoutMs`. */
export async function run(
  script: string,
  args: string[],
  env: Record<string, string>,
  timeoutMs = 15_000,
  input?: string,
): Promise<Exit> {
  const child = spawn(process.execPath, [script, ...args], { cwd: ROOT, env: cleanEnv(env), stdio: "pipe" });
  running.add(child);
  if (input !== undefined) child.stdin?.end(input);
  return exited(child, timeoutMs);
}

function exited(child: ChildProcess, timeoutMs: number): Promise<Exit> {
  let stdout = "";
  let stderr = "";
  child.stdout?.on("data", (chunk: Buffer) => {
    stdout += chunk.toString();
  });
  child.stderr?.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`timed out after ${timeoutMs} ms\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, timeoutMs);
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      running.delete(child);
      // let the pipes drain before reporting what the process printed
      setImmediate(() => resolve({ code, signal, stdout, stderr }));
    });
  });
}

export interface VerifydServer {
  url: string;
  child: ChildProcess;
  /** what the process printed so far */
  output(): string;
  /** sends a signal and resolves when the process is gone */
  stop(signal: NodeJS.Signals): Promise<Exit>;
}

/** Starts `node dist/main.js` and resolves once `/healthz` answers (at most `timeoutMs`). */
export async function startServer(env: Record<string, string>, timeoutMs = 15_000): Promise<VerifydServer> {
  const port = await freePort();
  const child = spawn(process.execPath, [MAIN], {
    cwd: ROOT,
    env: cleanEnv({ VERIFYD_HOST: "127.0.0.1", VERIFYD_PORT: String(port), ...env }),
    stdio: "pipe",
  });
  running.add(child);
  const exit = exited(child, 120_000);
  let gone: Exit | null = null;
  exit.then(
    (result) => {
      gone = result;
    },
    () => {},
  );
  let printed = "";
  child.stdout?.on("data", (chunk: Buffer) => {
    printed += chunk.toString();
  });
  child.stderr?.on("data", (chunk: Buffer) => {
    printed += chunk.toString();
  });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (gone) throw new Error(`verifyd exited before it was ready: ${JSON.stringify(gone)}`);
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`verifyd was not ready within ${timeoutMs} ms:\n${printed}`);
    }
    const ok = await fetch(`${url}/healthz`).then(
      (response) => response.ok,
      () => false,
    );
    if (ok) break;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  return {
    url,
    child,
    output: () => printed,
    async stop(signal) {
      if (!gone) child.kill(signal);
      return exit;
    },
  };
}

/** Kills every process these helpers started that is still running (afterEach / afterAll). */
export async function killAll(): Promise<void> {
  const children = [...running];
  await Promise.all(
    children.map(
      (child) =>
        new Promise<void>((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) return resolve();
          child.once("exit", () => resolve());
          child.kill("SIGKILL");
        }),
    ),
  );
  running.clear();
}

/**
 * Polls `probe` until it returns a value (not undefined), at most `timeoutMs`; `seen` describes
 * the last observation in the timeout's message.
 */
export async function eventually<T>(
  probe: () => Promise<T | undefined>,
  timeoutMs: number,
  what: string,
  seen: () => string = () => "",
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} ${seen()}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

export async function postJson(
  url: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

export async function getJson(
  url: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(url, { headers });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}
