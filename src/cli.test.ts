import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, describe, expect, it, vi } from "vitest";
import { deleteRedisPrefix, dropSchema, uniqueName } from "../test/cluster/backends.js";
import {
  BIN,
  cleanEnv,
  eventually,
  freePort,
  getJson,
  killAll,
  MAIN,
  postJson,
  run,
  startServer,
} from "../test/e2e/verifyd-process.js";
import { type ClusterBackends, modesToTest } from "../test/harness.js";
import { startSmtpRecorder } from "../test/servers/smtp-recorder.js";
import { runCli } from "./cli.js";
import { loadConfig } from "./config/load.js";
import { mintApiKey } from "./core/apps/apps.js";
import type { App } from "./core/types.js";
import { openStore } from "./server.js";
import { openSqliteDatabase } from "./storage/sqlite/sqlite-database.js";

/**
 * The real `verifyd` command (bin/verifyd.js -> dist/main.js) in child processes. Each test uses
 * its own data dir and port, so they run concurrently (a process start costs about a second).
 */

const dirs: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "verifyd-cli-"));
  dirs.push(dir);
  return dir;
}
/**
 * A data dir holding a migrated store, as a server (or `verifyd migrate`) leaves it: the `apps`
 * commands open only a store that exists.
 */
function storeDir(): string {
  const dir = tempDir();
  openSqliteDatabase({ path: join(dir, "verifyd.db") }).close();
  return dir;
}
afterAll(async () => {
  await killAll();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

describe.concurrent("invalid configuration", () => {
  it.for([
    ["VERIFYD_PORT=abc", { VERIFYD_PORT: "abc" }, /VERIFYD_PORT \(port\): /],
    ["a blank VERIFYD_HOST", { VERIFYD_HOST: " " }, /VERIFYD_HOST \(host\): /],
    // an address of no interface here (TEST-NET-1): refused by listen, named as the others
    [
      "a VERIFYD_HOST not on this machine",
      { VERIFYD_HOST: "192.0.2.1" },
      /VERIFYD_HOST \(host\): cannot listen on "192\.0\.2\.1" \(EADDRNOTAVAIL\)/,
    ],
    [
      "production without a secret",
      { VERIFYD_MODE: "production" },
      /VERIFYD_SECRET \(secret\): required in production mode/,
    ],
  ] as const)(
    "exits non-zero before listening with %s, naming the key",
    async ([, env, message], { expect }) => {
      const exit = await run(MAIN, [], { VERIFYD_DATA_DIR: tempDir(), ...env });
      expect(exit.code).toBe(1);
      expect(exit.stderr).toMatch(/^invalid configuration:/);
      expect(exit.stderr).toMatch(message);
      expect(exit.stdout).not.toMatch(/listening/);
    },
  );

  it("names an unknown key of the config file", async ({ expect }) => {
    const dir = tempDir();
    const file = join(dir, "verifyd.json");
    writeFileSync(
      file,
      JSON.stringify({ port: 8080, colour: "blue", apps: [{ id: "shop", policy: { codeLenght: 6 } }] }),
    );
    const exit = await run(MAIN, [], { VERIFYD_DATA_DIR: dir, VERIFYD_CONFIG: file });
    expect(exit.code).toBe(1);
    expect(exit.stderr).toMatch(/colour/);
    expect(exit.stderr).toMatch(/apps\/0\/policy.*codeLenght/);
  });

  it("refuses the CLI commands too", async ({ expect }) => {
    const exit = await run(BIN, ["apps", "list"], { VERIFYD_DATA_DIR: tempDir(), VERIFYD_PORT: "abc" });
    expect(exit.code).toBe(1);
    expect(exit.stderr).toMatch(/VERIFYD_PORT/);
  });
});

describe.concurrent("verifyd migrate", () => {
  // Regression: on a fresh data dir `migrate` crashed preparing statements on tables it had yet
  // to create. @see issue 2
  it("prints the versions it applied, and none the second time", async ({ expect }) => {
    const env = { VERIFYD_DATA_DIR: tempDir() };
    const first = await run(BIN, ["migrate"], env);
    expect(first.code).toBe(0);
    const applied = JSON.parse(first.stdout).applied as number[];
    expect(applied[0]).toBe(1);
    expect(applied).toEqual([...applied].sort((a, b) => a - b));
    const second = await run(BIN, ["migrate"], env);
    expect(second.code).toBe(0);
    expect(JSON.parse(second.stdout)).toEqual({ applied: [] });
  });

  // Regression: beside a server migrating at its start, `migrate` printed only "database is
  // locked", and for a data dir holding some other file only "file is not a database", neither
  // naming the file. @see .scratch/rev-storage NOTES.md
  it("names the file another process holds, and says who may", async ({ expect }) => {
    const dir = tempDir();
    const env = { VERIFYD_DATA_DIR: dir };
    expect((await run(BIN, ["migrate"], env)).code).toBe(0);
    const path = join(dir, "verifyd.db");
    const holder = new Database(path);
    try {
      holder.exec("BEGIN IMMEDIATE");
      const exit = await run(BIN, ["migrate"], env);
      expect(exit.code).toBe(1);
      expect(exit.stderr).toContain(
        `verifyd migrate: ${path}: database is locked: another process holds its write lock`,
      );
      expect(exit.stderr).toMatch(/a running verifyd migrates it at its own start/);
    } finally {
      holder.close();
    }
  });

  // Regression: with PostgreSQL unreachable it printed only "connect ECONNREFUSED 127.0.0.1:5999",
  // where the server and the `apps` commands name the setting. @see rev-cli 3
  it("names VERIFYD_DATABASE_URL when PostgreSQL does not answer, and never repeats the URL", async ({
    expect,
  }) => {
    const exit = await run(BIN, ["migrate"], {
      VERIFYD_DATA_DIR: tempDir(),
      VERIFYD_DATABASE_URL: `postgres://verifyd:hunter2@127.0.0.1:${await freePort()}/test`,
      VERIFYD_REDIS_URL: "redis://127.0.0.1:6379",
    });
    expect(exit.code).toBe(1);
    expect(exit.stderr).toMatch(
      /^VERIFYD_DATABASE_URL \(databaseUrl\): cannot use PostgreSQL: .*ECONNREFUSED/,
    );
    expect(exit.stderr).not.toMatch(/hunter2/);
  });

  it("names a file in the data dir that is not a database", async ({ expect }) => {
    const dir = tempDir();
    const path = join(dir, "verifyd.db");
    writeFileSync(path, "not a database, but long enough to be read as one's header....................\n", {
      mode: 0o600,
    });
    const exit = await run(BIN, ["migrate"], { VERIFYD_DATA_DIR: dir });
    expect(exit.code).toBe(1);
    expect(exit.stderr.trim()).toBe(`verifyd migrate: ${path}: file is not a database`);
  });
});

describe.concurrent("an error of the SQLite file", () => {
  // Regression: `serve` on a full disk printed only "database or disk is full", a read-only file
  // "attempt to write a readonly database" (`apps list` too), a file of something else "file is
  // not a database": only `migrate` named the file. @see reviewer storage 3
  it.for(["serve", "apps list", "apps disable default"])(
    "names the file for `verifyd %s`",
    async (line, { expect }) => {
      const args = line.split(" ");
      const dir = tempDir();
      const path = join(dir, "verifyd.db");
      writeFileSync(
        path,
        "not a database, but long enough to be read as one's header....................\n",
        {
          mode: 0o600,
        },
      );
      const exit = await run(BIN, args, { VERIFYD_DATA_DIR: dir, VERIFYD_PORT: String(await freePort()) });
      expect(exit.code).toBe(1);
      expect(exit.stderr.trim()).toBe(
        `verifyd ${args.join(" ").replace(/ default$/, "")}: ${path}: file is not a database`,
      );
    },
  );
});

describe.concurrent("verifyd apps where there is no store", () => {
  // Regression: run from another dir without VERIFYD_DATA_DIR, `apps disable default` made a new
  // ./data/verifyd.db and dev-secret, disabled the app there, printed success and exited 0, while
  // the real server kept serving it. @see reviewer storage 2
  it.for(["apps disable default", "apps create --name Shop", "apps list"])(
    "`verifyd %s` exits 1 naming the file it did not find, and creates nothing",
    (args, { expect }) => {
      const cwd = tempDir();
      const exit = spawnSync(process.execPath, [BIN, ...args.split(" ")], {
        cwd,
        env: cleanEnv({}),
        encoding: "utf8",
      });
      expect(exit.status).toBe(1);
      expect(exit.stderr.trim()).toBe(
        `no verifyd database at ${join(cwd, "data", "verifyd.db")} (VERIFYD_DATA_DIR): \`verifyd migrate\` or the server's first start creates it`,
      );
      expect(exit.stdout).toBe("");
      expect(readdirSync(cwd)).toEqual([]);
    },
  );
});

describe.concurrent("verifyd apps", () => {
  it("creates an app whose key authenticates the native API in production, lists it, and disables it", async ({
    expect,
  }) => {
    const env = {
      VERIFYD_DATA_DIR: storeDir(),
      VERIFYD_MODE: "production",
      VERIFYD_SECRET: "cli-test-secret-0123456789",
    };
    const created = await run(BIN, ["apps", "create", "--name", "Shop"], env);
    expect(created.code).toBe(0);
    const app = JSON.parse(created.stdout);
    expect(app).toEqual({
      id: "shop",
      client_id: "shop",
      api_key: expect.stringMatching(/^vk_[A-Za-z0-9_-]{32}$/),
    });

    // A second app of the same name gets its own id.
    const twin = JSON.parse((await run(BIN, ["apps", "create", "--name", "Shop"], env)).stdout);
    expect(twin.id).toBe("shop-2");
    expect(twin.api_key).not.toBe(app.api_key);

    const listed = JSON.parse((await run(BIN, ["apps", "list"], env)).stdout) as {
      id: string;
      disabled: boolean;
    }[];
    expect(listed).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ id: "default", client_id: "default", disabled: false }),
        expect.objectContaining({ id: "shop", client_id: "shop", name: "Shop", disabled: false }),
        expect.objectContaining({ id: "shop-2", disabled: false }),
      ]),
    );

    const probe = (server: { url: string }, headers: Record<string, string> = {}) =>
      getJson(`${server.url}/v1/verifications/vf_AAAAAAAAAAAAAAAAAAAAAA`, headers);
    const bearer = { authorization: `Bearer ${app.api_key}` };
    let server = await startServer(env);
    expect((await probe(server)).status).toBe(401);
    expect((await probe(server, { authorization: "Bearer vk_unknown" })).status).toBe(401);
    expect(await probe(server, bearer)).toMatchObject({
      status: 404,
      body: { code: "VERIFICATION_NOT_FOUND" },
    });
    // SIGTERM drains and exits cleanly
    expect((await server.stop("SIGTERM")).code).toBe(0);

    const disabled = await run(BIN, ["apps", "disable", "shop"], env);
    expect(disabled.code).toBe(0);
    expect(JSON.parse(disabled.stdout)).toEqual({ id: "shop", disabled: true });
    const after = JSON.parse((await run(BIN, ["apps", "list"], env)).stdout) as {
      id: string;
      disabled: boolean;
    }[];
    expect(after.find((each) => each.id === "shop")?.disabled).toBe(true);

    server = await startServer(env);
    expect(await probe(server, bearer)).toMatchObject({ status: 403, body: { code: "APP_DISABLED" } });
    // the other app is untouched
    expect((await probe(server, { authorization: `Bearer ${twin.api_key}` })).status).toBe(404);
    await server.stop("SIGTERM");
  });

  it("stores the API key hashed, never as issued", async ({ expect }) => {
    const dir = storeDir();
    const created = JSON.parse(
      (await run(BIN, ["apps", "create", "--name", "Blog"], { VERIFYD_DATA_DIR: dir })).stdout,
    );
    const { readFileSync, readdirSync } = await import("node:fs");
    for (const name of readdirSync(dir).filter((file) => file.startsWith("verifyd.db"))) {
      expect(readFileSync(join(dir, name)).includes(Buffer.from(created.api_key))).toBe(false);
    }
  });
});

/**
 * Runs CLI commands in this process, all at once (their store round trips interleave, as separate
 * processes' may), with `env` laid over the environment; each one's exit code, and what they printed.
 */
async function cliAtOnce(
  commands: string[][],
  env: Record<string, string>,
): Promise<{ codes: (number | undefined)[]; out: string[]; err: string[] }> {
  const out: string[] = [];
  const err: string[] = [];
  const log = vi
    .spyOn(console, "log")
    .mockImplementation((...parts: unknown[]) => void out.push(parts.join(" ")));
  const error = vi
    .spyOn(console, "error")
    .mockImplementation((...parts: unknown[]) => void err.push(parts.join(" ")));
  const previous = Object.fromEntries(Object.keys(env).map((name) => [name, process.env[name]]));
  Object.assign(process.env, env);
  try {
    return { codes: await Promise.all(commands.map((args) => runCli(args))), out, err };
  } finally {
    log.mockRestore();
    error.mockRestore();
    for (const [name, value] of Object.entries(previous)) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  }
}

/** Runs one CLI command in this process. */
async function cli(
  args: string[],
  env: Record<string, string> = { VERIFYD_DATA_DIR: storeDir() },
): Promise<{ code: number | undefined; out: string; err: string }> {
  const { codes, out, err } = await cliAtOnce([args], env);
  return { code: codes[0], out: out.join("\n"), err: err.join("\n") };
}

/**
 * The environment of commands on one store in this mode: cluster mode's on a schema and key prefix
 * of its own, dropped after the suite's tests.
 */
function storeEnv(cluster: ClusterBackends | undefined): () => Record<string, string> {
  if (!cluster) return () => ({ VERIFYD_DATA_DIR: storeDir() });
  const [schema, prefix] = [uniqueName("cli"), `${uniqueName("cli")}:`];
  afterAll(() =>
    Promise.all([dropSchema(cluster.databaseUrl, schema), deleteRedisPrefix(cluster.redisUrl, prefix)]),
  );
  return () => ({
    VERIFYD_DATA_DIR: tempDir(),
    VERIFYD_REDIS_URL: cluster.redisUrl,
    VERIFYD_DATABASE_URL: cluster.databaseUrl,
    VERIFYD_DATABASE_SCHEMA: schema,
    VERIFYD_REDIS_PREFIX: prefix,
    VERIFYD_DATABASE_POOL_SIZE: "4",
  });
}

for (const { mode, cluster } of await modesToTest("verifyd apps at once")) {
  describe(`verifyd apps at once (${mode})`, () => {
    const env = storeEnv(cluster);
    // Regression: each `apps create` looked for a free id, then saved the app, replacing one another
    // command had saved under that id in between: two of ten printed one id, and the key of the one
    // replaced never worked.
    it("gives each of many `apps create` at once an id of its own, and each printed key works", async () => {
      const shared = env();
      const runs = await cliAtOnce(
        Array.from({ length: 8 }, () => ["apps", "create", "--name", "Race"]),
        shared,
      );
      expect(runs.codes, runs.err.join("\n")).toEqual(runs.codes.map(() => 0));
      const created = runs.out.map((line) => JSON.parse(line) as { id: string; api_key: string });
      expect(created.map((app) => app.id).sort()).toEqual(
        ["race", ...[2, 3, 4, 5, 6, 7, 8].map((suffix) => `race-${suffix}`)].sort(),
      );
      const { backend, apps } = await openStore(loadConfig(shared), undefined, undefined, { serving: false });
      try {
        for (const app of created) expect((await apps.byApiKey(app.api_key))?.id).toBe(app.id);
      } finally {
        await backend.close();
      }
    });

    // Regression: `apps disable` and `apps revoke-key` read the app and saved it whole, so commands
    // run on one app at once lost all but one of their changes (a revoked key came back).
    it("keeps every change of `apps disable` and `apps revoke-key` run on one app at once", async () => {
      const shared = env();
      const created = JSON.parse((await cli(["apps", "create", "--name", "Shop"], shared)).out);
      // More keys than the one printed: no command adds one, so they go into the store directly.
      const keys = Array.from({ length: 4 }, () => mintApiKey());
      const { backend, apps } = await openStore(loadConfig(shared), undefined, undefined, { serving: false });
      try {
        const shop = (await apps.stored("shop")) as App;
        await apps.save({
          ...shop,
          apiKeyHashes: [...shop.apiKeyHashes, ...keys.map((key) => key.apiKeyHash)],
        });
      } finally {
        await backend.close();
      }
      const runs = await cliAtOnce(
        [...keys.map(({ apiKey }) => ["apps", "revoke-key", "shop", apiKey]), ["apps", "disable", "shop"]],
        shared,
      );
      expect(runs.codes, runs.err.join("\n")).toEqual(runs.codes.map(() => 0));
      const after = await openStore(loadConfig(shared), undefined, undefined, { serving: false });
      try {
        const shop = await after.apps.stored("shop");
        expect(shop?.disabled).toBe(true);
        expect(shop?.apiKeyHashes).toHaveLength(1);
        expect((await after.apps.byApiKey(created.api_key))?.id).toBe("shop");
      } finally {
        await after.backend.close();
      }
    });
  });
}

describe("verifyd serve's shutdown", () => {
  // Regression: the signal handlers were `once`, so a second SIGTERM (or the second SIGINT of
  // `npm start` + Ctrl-C, npm forwarding its own) killed the process at once: the SMTP try in
  // flight was cut and its message sent again at the next start. @see rev-config 2
  it("finishes the delivery in flight through a second SIGTERM, and exits 0", async () => {
    const smtp = await startSmtpRecorder({ dataDelayMs: 2_000 });
    const dir = tempDir();
    try {
      const server = await startServer({
        VERIFYD_DATA_DIR: dir,
        VERIFYD_SMTP_URL: smtp.url,
        VERIFYD_EMAIL_FROM: "codes@shop.example",
        VERIFYD_LOG_LEVEL: "info",
      });
      const sent = await postJson(`${server.url}/v1/verifications`, {
        channel: "email",
        to: "ann@shop.example",
        purpose: "sign_in",
      });
      expect(sent.status, JSON.stringify(sent.body)).toBe(201);
      // the relay has the message and holds its answer: the try is in flight
      await eventually(async () => (smtp.messages.length > 0 ? true : undefined), 10_000, "the relay's DATA");
      const exit = server.stop("SIGTERM");
      await new Promise((resolve) => setTimeout(resolve, 300));
      server.child.kill("SIGTERM");
      const { code, signal } = await exit;
      expect({ code, signal }, server.output()).toEqual({ code: 0, signal: null });
      expect(server.output()).toMatch(/already shutting down/);
      const db = new Database(join(dir, "verifyd.db"), { readonly: true });
      try {
        expect(db.prepare("SELECT status FROM outbox").all()).toEqual([{ status: "sent" }]);
      } finally {
        db.close();
      }
      expect(smtp.messages).toHaveLength(1);
    } finally {
      await smtp.close();
    }
  });
});

describe("verifyd serve's start", () => {
  // Regression: with VERIFYD_PORT=0 the "verifyd listening" line said port 0, not the port the
  // system gave, and a misspelt VERIFYD_* variable (VERIFYD_TRUST_PROXIES) was silently ignored.
  it("logs the port it listens on and the VERIFYD_* variables it does not read", async () => {
    const child = spawn(process.execPath, [MAIN], {
      env: cleanEnv({
        VERIFYD_DATA_DIR: tempDir(),
        VERIFYD_PORT: "0",
        VERIFYD_LOG_LEVEL: "info",
        VERIFYD_TRUST_PROXIES: "10.0.0.0/8",
        VERIFYD_TEST_ANYTHING: "suites' own",
      }),
      stdio: ["ignore", "pipe", "pipe"],
    });
    let printed = "";
    child.stdout.on("data", (chunk: Buffer) => {
      printed += chunk.toString();
    });
    try {
      const port = await eventually(
        async () => /"port":(\d+)[^\n]*"msg":"verifyd listening"/.exec(printed)?.[1],
        15_000,
        "the listening line",
      );
      expect(Number(port)).toBeGreaterThan(0);
      expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
      expect(printed).toMatch(/"variables":\["VERIFYD_TRUST_PROXIES"\][^\n]*misspelt/);
    } finally {
      child.kill("SIGKILL");
    }
  });
});

/** Refusals need no process of their own: runCli in this process, its output captured. */
describe("runCli refusals", () => {
  /** A data dir and a config file holding `file`, as the CLI's environment. */
  function withConfig(file: Record<string, unknown>, { store = true } = {}): Record<string, string> {
    const dir = store ? storeDir() : tempDir();
    writeFileSync(join(dir, "verifyd.json"), JSON.stringify(file));
    return { VERIFYD_DATA_DIR: dir, VERIFYD_CONFIG: join(dir, "verifyd.json") };
  }

  it.each([
    [["apps", "create"], 2, /--name NAME is required/],
    [["apps", "create", "--name", "  "], 2, /--name NAME is required/],
    [["apps", "disable", "nope"], 1, /no app "nope"/],
    [["apps", "frobnicate"], 2, /usage: verifyd/],
    [["launch"], 2, /unknown command "launch"/],
  ])("refuses `verifyd %j` with exit code %i", async (args, code, message) => {
    const result = await cli(args);
    expect(result.code).toBe(code);
    expect(result.err).toMatch(message);
  });

  // Regression: these were refused only after the file's apps were synced into the store (in dev
  // mode a dev-secret written into the data dir), some not at all (`migrate extra` migrated), and
  // a name the config file refuses was taken. @see rev-config 7
  it.each([
    [["apps", "create"], /^apps create: --name NAME is required\nusage: verifyd/],
    [["apps", "frobnicate"], /^apps: unknown subcommand "frobnicate"\nusage: verifyd/],
    [["apps"], /^apps: a subcommand is needed \(create, list, disable or revoke-key\)/],
    [["apps", "create", "--name", "x".repeat(101)], /^apps create: --name must be at most 100 characters/],
    [["apps", "create", "--name", "Shop\r\nBcc"], /^apps create: --name .* no control characters/],
    [["apps", "create", "--name", "Shop", "--colour", "blue"], /^apps create: Unknown option '--colour'/],
    [["apps", "create", "--name", "Shop", "extra"], /^apps create: Unexpected argument 'extra'/],
    // Regression: a -h that was --name's value printed the usage and exited 0.
    [["apps", "create", "--name", "-h"], /^apps create: Option '--name' argument is ambiguous/],
    [["apps", "create", "--name", "--help"], /^apps create: Option '--name' argument is ambiguous/],
    [["apps", "list", "--all"], /^apps list: takes no arguments \(got "--all"\)/],
    [["apps", "disable"], /^apps disable: ID is required/],
    [["apps", "disable", "a", "b"], /^apps disable: takes one ID \(got "a", "b"\)/],
    [
      ["apps", "revoke-key", "a"],
      /^apps revoke-key: ID and API_KEY \(or - to read it from stdin\) are required/,
    ],
    [["migrate", "extra"], /^migrate: takes no arguments \(got "extra"\)/],
    [["launch"], /^unknown command "launch"/],
  ])("refuses `verifyd %j` as a usage error (2) before the store is opened", async (args, message) => {
    const env = withConfig({ apps: [{ id: "web" }] }, { store: false });
    const result = await cli(args, env);
    expect(result.code, result.err).toBe(2);
    expect(result.err).toMatch(message);
    expect(readdirSync(env.VERIFYD_DATA_DIR as string)).toEqual(["verifyd.json"]);
  });

  it("refuses `verifyd serve --port 9` as a usage error instead of serving", async () => {
    const dir = tempDir();
    const exit = await run(
      MAIN,
      ["serve", "--port", "9"],
      { VERIFYD_DATA_DIR: dir, VERIFYD_PORT: "0" },
      10_000,
    );
    expect(exit.code).toBe(2);
    expect(exit.stderr).toMatch(
      /^serve: takes no arguments \(got "--port", "9"\); the configuration is VERIFYD_\* and VERIFYD_CONFIG/,
    );
    expect(readdirSync(dir)).toEqual([]);
  });

  it("creates an app whose name is at the config file's limit of 100 characters", async () => {
    const created = await cli(["apps", "create", "--name", `  ${"n".repeat(100)}  `], withConfig({}));
    expect(created).toMatchObject({ code: 0, err: "" });
  });

  // Regression: help loaded the configuration first, so a bad variable (or production's missing
  // secret) kept it from printing; `-h` and `apps --help` were unknown commands. @see rev-config 7
  it.each([
    [["help"]],
    [["--help"]],
    [["-h"]],
    [["apps", "--help"]],
    [["apps", "help"]],
    [["apps", "create", "-h"]],
    [["apps", "create", "--name", "Shop", "-h"]],
    [["apps", "create", "--name=-h", "--help"]],
  ])("prints its usage and exit codes for `verifyd %j` whatever the configuration", async (args) => {
    const result = await cli(args, {
      VERIFYD_DATA_DIR: tempDir(),
      VERIFYD_PORT: "abc",
      VERIFYD_MODE: "production",
    });
    expect(result).toMatchObject({ code: 0, err: "" });
    expect(result.out).toMatch(/^usage: verifyd \[serve\]/);
    expect(result.out).toMatch(/exit status: 0 done, 1 failed .*, 2 usage error/);
  });

  it("refuses an unknown command as a usage error whatever the configuration", async () => {
    const result = await cli(["launch"], { VERIFYD_DATA_DIR: tempDir(), VERIFYD_PORT: "abc" });
    expect(result.code).toBe(2);
    expect(result.err).toMatch(/^unknown command "launch"/);
  });

  // Regression: a config app holding a client id ("shop") made `apps create --name shop` crash
  // on "UNIQUE constraint failed: apps.client_id". @see core review 12
  it("creates an app under an id and client id no other app has", async () => {
    const env = withConfig({ apps: [{ id: "web", clientId: "shop" }] });
    const created = await cli(["apps", "create", "--name", "shop"], env);
    expect(created).toMatchObject({ code: 0, err: "" });
    expect(JSON.parse(created.out)).toMatchObject({ id: "shop-2", client_id: "shop-2" });
  });

  // Regression: the accents NFKD splits off became hyphens ("cafe-u-ni-code").
  it("makes an accented name's id of its letters", async () => {
    const created = await cli(["apps", "create", "--name", "Café Ünïcode"], withConfig({}));
    expect(JSON.parse(created.out)).toMatchObject({ id: "cafe-unicode" });
  });

  // Regression: a client id clash with a stored app ended in a bare UNIQUE constraint error.
  // @see core review 12
  it("refuses a config app whose client id a stored app has, naming the file's key", async () => {
    const env = withConfig({});
    expect((await cli(["apps", "create", "--name", "Blog"], env)).code).toBe(0);
    writeFileSync(env.VERIFYD_CONFIG as string, JSON.stringify({ apps: [{ id: "web", clientId: "blog" }] }));
    const listed = await cli(["apps", "list"], env);
    expect(listed.code).toBe(1);
    expect(listed.err).toMatch(
      /^invalid configuration:\n {2}- apps\/0\/clientId: client id "blog" already belongs to app "blog"/,
    );
  });

  // Regression: `apps list` run from a shell without the service's VERIFYD_CONFIG took every key
  // the file gave off the apps, and the running server refused them. @see fix review 1
  it("takes no key the file gave off an app when run without the service's config file", async () => {
    const env = withConfig({ apps: [{ id: "web", apiKeys: ["web-key-0123456789abcdef"] }] });
    const keyHash = async (config: Record<string, string>) => {
      const { backend, apps } = await openStore(loadConfig(config));
      try {
        return (await apps.stored("web"))?.apiKeyHashes.length;
      } finally {
        await backend.close();
      }
    };
    expect(await keyHash(env)).toBe(1); // as the server's start left it
    const shell = { VERIFYD_DATA_DIR: env.VERIFYD_DATA_DIR as string };
    for (const args of [
      ["apps", "list"],
      ["apps", "create", "--name", "blog"],
      ["apps", "disable", "blog"],
    ]) {
      expect((await cli(args, shell)).code).toBe(0);
    }
    const { backend, apps } = await openStore(loadConfig(shell), undefined, undefined, { serving: false });
    try {
      expect((await apps.stored("web"))?.apiKeyHashes).toHaveLength(1);
    } finally {
      await backend.close();
    }
  });

  // Regression: the CLI's add-only sync never took a key off the app the new file moves it from,
  // so every `apps` command exited 1 until the server's start. @see final review 3
  it.each([
    ["still declares", [{ id: "a" }, { id: "b", apiKeys: ["moving-key-0123456789abcdef"] }]],
    ["no longer declares", [{ id: "b", apiKeys: ["moving-key-0123456789abcdef"] }]],
  ])("follows a key the file moves to another app from one it %s", async (_, moved) => {
    const key = "moving-key-0123456789abcdef";
    const env = withConfig({ apps: [{ id: "a", apiKeys: [key] }, { id: "b" }] });
    const start = await openStore(loadConfig(env)); // the server's start with the first file
    await start.backend.close();
    writeFileSync(env.VERIFYD_CONFIG as string, JSON.stringify({ apps: moved }));
    expect(await cli(["apps", "list"], env)).toMatchObject({ code: 0, err: "" });
    const { backend, apps } = await openStore(loadConfig(env), undefined, undefined, { serving: false });
    try {
      expect((await apps.byApiKey(key))?.id).toBe("b");
    } finally {
      await backend.close();
    }
  });

  // A key `apps create` printed, or one an earlier version kept after the file dropped it, had no
  // way out. @see fix review 5
  it("revokes one key of an app, leaving its others", async () => {
    const env = withConfig({ apps: [{ id: "web", apiKeys: ["web-key-0123456789abcdef"] }] });
    const created = JSON.parse((await cli(["apps", "create", "--name", "blog"], env)).out);
    expect(await cli(["apps", "revoke-key", "blog", "not-its-key"], env)).toMatchObject({
      code: 1,
      err: 'apps revoke-key: app "blog" has no such key',
    });
    const revoked = await cli(["apps", "revoke-key", "blog", created.api_key], env);
    expect(revoked).toMatchObject({ code: 0, err: "" });
    expect(JSON.parse(revoked.out)).toEqual({ id: "blog", revoked: true, keys_left: 0 });
    // a key the file lists is revoked by taking it out of the file: any sync would give it back
    expect(await cli(["apps", "revoke-key", "web", "web-key-0123456789abcdef"], env)).toMatchObject({
      code: 1,
      err: "apps revoke-key: the config file gives this key (apps/0/apiKeys): take it out of the file and restart the server",
    });
    const shell = { VERIFYD_DATA_DIR: env.VERIFYD_DATA_DIR as string };
    // (a shell without the file may: the service's next start gives it back)
    expect((await cli(["apps", "revoke-key", "web", "web-key-0123456789abcdef"], shell)).code).toBe(0);
    const { backend, apps } = await openStore(loadConfig(shell), undefined, undefined, { serving: false });
    try {
      expect(await apps.byApiKey(created.api_key)).toBeNull();
      expect(await apps.byApiKey("web-key-0123456789abcdef")).toBeNull();
    } finally {
      await backend.close();
    }
  });

  it("revokes a key read from stdin, out of the shell's history", async () => {
    const env = withConfig({});
    const created = JSON.parse((await cli(["apps", "create", "--name", "blog"], env)).out);
    const revoked = await run(BIN, ["apps", "revoke-key", "blog", "-"], env, 15_000, `${created.api_key}\n`);
    expect(revoked.code, revoked.stderr).toBe(0);
    expect(JSON.parse(revoked.stdout)).toEqual({ id: "blog", revoked: true, keys_left: 0 });
  });

  // Regression: `apps disable` saved the app with the file's global templates laid under its own,
  // so later edits of the global templates never reached it. @see core review 11
  it("disables an app without storing the global templates in it", async () => {
    const env = withConfig({ templates: { sign_in: { en: { subject: "S1", text: "OLD {code}" } } } });
    expect((await cli(["apps", "create", "--name", "shop"], env)).code).toBe(0);
    expect(await cli(["apps", "disable", "shop"], env)).toMatchObject({ code: 0, err: "" });
    const { backend, apps } = await openStore(loadConfig(env));
    try {
      const stored = await apps.stored("shop");
      expect(stored?.disabled).toBe(true);
      expect(stored?.templates).toEqual({});
    } finally {
      await backend.close();
    }
  });

  it("prints its usage for help", async () => {
    const result = await cli(["help"]);
    expect(result.code).toBe(0);
    expect(result.out).toMatch(/verifyd apps create --name NAME/);
  });
});
