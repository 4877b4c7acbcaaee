import { parseArgs } from "node:util";
import { Value } from "typebox/value";
import { newMintedApp } from "./config/apps-sync.js";
import {
  type Config,
  ConfigError,
  isClusterMode,
  loadConfig,
  unknownEnvironmentVariables,
} from "./config/load.js";
import { AppConfigSchema } from "./config/schema.js";
import { type AppDirectory, mintApiKey } from "./core/apps/apps.js";
import { OtpError } from "./core/errors.js";
import { sha256Hex } from "./core/ids.js";
import type { App } from "./core/types.js";
import { REQUEST_TIMEOUT_MS } from "./http/app.js";
import { closeLogger, createLogger } from "./observability/logger.js";
import { openStore, startServer } from "./server.js";
import { postgresUnusable } from "./storage/cluster/index.js";
import { migratePostgresDatabase } from "./storage/postgres/postgres-migrator.js";
import { sqlitePath } from "./storage/sqlite/index.js";
import { migrateSqlite, openSqliteDatabase } from "./storage/sqlite/sqlite-database.js";

// Past the slowest request's timeout (and Node's check of it) and a delivery try's.
const SHUTDOWN_DEADLINE_MS = 2 * REQUEST_TIMEOUT_MS;
// How long an exit waits for its last log lines to reach stdout: a pipe nobody reads must not hold it.
const LOG_DRAIN_MS = 2_000;

const USAGE = `usage: verifyd [serve]
       verifyd migrate
       verifyd apps create --name NAME
       verifyd apps list
       verifyd apps disable ID
       verifyd apps revoke-key ID API_KEY|-
       verifyd help | --help | -h

The configuration is the VERIFYD_* variables and the JSON file VERIFYD_CONFIG names, as for the server.
exit status: 0 done, 1 failed (invalid configuration, no such app, a store error), 2 usage error`;

type Command =
  | { name: "help" }
  | { name: "serve" }
  | { name: "migrate" }
  | { name: "apps create"; appName: string }
  | { name: "apps list" }
  | { name: "apps disable"; id: string }
  | { name: "apps revoke-key"; id: string; apiKey: string };

/** A command line this CLI cannot run as written: exit code 2, before anything is read or written. */
class UsageError extends Error {}

/** Runs one CLI command; resolves to the exit code (undefined while a server keeps running). */
export async function runCli(args: string[]): Promise<number | undefined> {
  let command: Command;
  try {
    command = parseCommand(args);
  } catch (error) {
    if (error instanceof UsageError) {
      console.error(`${error.message}\n${USAGE}`);
      return 2;
    }
    throw error;
  }
  // Before the configuration: help must print whatever is wrong with it.
  if (command.name === "help") {
    console.log(USAGE);
    return 0;
  }
  let config: Config;
  try {
    config = loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(error.message);
      return 1;
    }
    throw error;
  }
  try {
    if (command.name === "serve") return await serve(config);
    if (command.name === "migrate") return await migrate(config);
    return await apps(config, command);
  } catch (error) {
    // What only the store can tell (the file's apps against those stored): named like the rest.
    if (error instanceof ConfigError) {
      console.error(error.message);
      return 1;
    }
    // (a server's start, and the apps commands: migrate names its own)
    const named = isClusterMode(config)
      ? undefined
      : sqliteFileError(command.name, sqlitePath(config.dataDir), error);
    if (named === undefined) throw error;
    console.error(named);
    return 1;
  }
}

/**
 * An error of the SQLite file as the line that names it (`verifyd <command>: <path>: <SQLite's
 * message>`), for every command that opens the store: SQLite's own message names neither the file
 * ("database or disk is full", "attempt to write a readonly database") nor, for a lock, who holds
 * it. Undefined for any other error. A store fault the stores made of it is unwrapped.
 */
function sqliteFileError(command: string, path: string, error: unknown): string | undefined {
  const fault =
    error instanceof OtpError && error.code === "STORE_UNAVAILABLE" && error.cause !== undefined
      ? error.cause
      : error;
  const code = (fault as { code?: unknown } | null)?.code;
  if (typeof code !== "string" || !code.startsWith("SQLITE_")) return undefined;
  const busy = !code.startsWith("SQLITE_BUSY")
    ? ""
    : command === "migrate"
      ? ": another process holds its write lock (a running verifyd migrates it at its own start: stop it, or let it migrate)"
      : ": another process holds its write lock";
  return `verifyd ${command}: ${path}: ${(fault as Error).message}${busy}`;
}

/**
 * The whole command line checked before the configuration is read and the store opened: a usage
 * error must change nothing (opening the store syncs the file's apps, and in dev mode writes the
 * dev secret).
 */
function parseCommand(args: string[]): Command {
  if (asksForHelp(args) || args[0] === "help") return { name: "help" };
  const [command = "serve", ...rest] = args;
  if (command === "serve" || command === "migrate") {
    noArguments(command, rest, "; the configuration is VERIFYD_* and VERIFYD_CONFIG");
    return { name: command };
  }
  if (command !== "apps") throw new UsageError(`unknown command "${command}"`);
  const [subcommand, ...operands] = rest;
  switch (subcommand) {
    case undefined:
      throw new UsageError("apps: a subcommand is needed (create, list, disable or revoke-key)");
    case "help":
      return { name: "help" };
    case "create":
      return { name: "apps create", appName: appName(operands) };
    case "list":
      noArguments("apps list", operands);
      return { name: "apps list" };
    case "disable": {
      const [id, ...extra] = operands;
      if (id === undefined) throw new UsageError("apps disable: ID is required");
      if (extra.length > 0) throw new UsageError(`apps disable: takes one ID (got ${quoted(operands)})`);
      return { name: "apps disable", id };
    }
    case "revoke-key": {
      const [id, apiKey, ...extra] = operands;
      if (id === undefined || apiKey === undefined) {
        throw new UsageError("apps revoke-key: ID and API_KEY (or - to read it from stdin) are required");
      }
      if (extra.length > 0) {
        throw new UsageError(`apps revoke-key: takes ID and API_KEY (got ${quoted(operands)})`);
      }
      return { name: "apps revoke-key", id, apiKey };
    }
    default:
      throw new UsageError(`apps: unknown subcommand "${subcommand}"`);
  }
}

// The options that take the next argument as their value.
const OPTIONS_WITH_A_VALUE = new Set(["--name"]);

/**
 * Whether `-h` or `--help` is among the arguments, where it is no option's value: `apps create
 * --name -h` names an app (which parseArgs then asks to write as `--name=-h`), and asks for no help.
 */
function asksForHelp(args: string[]): boolean {
  for (let at = 0; at < args.length; at++) {
    const arg = args[at] as string;
    if (OPTIONS_WITH_A_VALUE.has(arg)) at++;
    else if (arg === "--help" || arg === "-h") return true;
  }
  return false;
}

function noArguments(command: string, args: string[], hint = ""): void {
  if (args.length > 0) throw new UsageError(`${command}: takes no arguments (got ${quoted(args)})${hint}`);
}

const quoted = (args: string[]) => args.map((arg) => JSON.stringify(arg)).join(", ");

/** `--name NAME`, held to the config file's limits for an app's name. */
function appName(args: string[]): string {
  let name: string | undefined;
  try {
    name = parseArgs({ args, options: { name: { type: "string" } }, strict: true }).values.name?.trim();
  } catch (error) {
    // parseArgs's own sentences: "Unknown option '--x'", "Unexpected argument 'x'", …
    throw new UsageError(`apps create: ${(error as Error).message}`);
  }
  if (!name) throw new UsageError("apps create: --name NAME is required");
  if (!Value.Check(AppConfigSchema.properties.name, name)) {
    throw new UsageError(
      "apps create: --name must be at most 100 characters, with no control characters (as an app's name in the config file)",
    );
  }
  return name;
}

async function serve(config: Config): Promise<undefined> {
  const logger = createLogger({ level: config.logLevel, devCodes: config.mode === "dev" });
  // A store whose files are gone from under the server (the data dir or its lock deleted) takes
  // no more writes, and a second server may be serving the dir: this one stops with exit 1, for
  // its supervisor to start it again on the dir as it is now.
  const server = await startServer(config, logger, {
    onStoreGone: () => shutdown("the store's files are gone", 1),
  });
  let closing = false;
  // Once the log is being closed nothing more may be written to it: the exit is under way.
  let exiting = false;
  const exit = (code: number) => {
    if (exiting) return;
    exiting = true;
    closeLogger(logger, LOG_DRAIN_MS, () => process.exit(code));
  };
  const shutdown = (signal: string, exitCode = 0) => {
    if (exiting) return;
    if (closing) {
      logger.warn(
        { signal },
        "already shutting down: waiting for the requests and deliveries in flight (SIGKILL stops at once)",
      );
      return;
    }
    closing = true;
    // The code the process ends with if it ends by itself, its handles all closed, before `exit`.
    process.exitCode = exitCode;
    logger.info(
      { signal },
      "shutting down: finishing the requests and deliveries in flight; queued messages go out at the next start",
    );
    // Requests time out after REQUEST_TIMEOUT_MS and deliveries after their try's timeout; a
    // shutdown still running well past both is stuck, and exits rather than linger unserving.
    setTimeout(() => {
      if (exiting) return;
      logger.error({ afterMs: SHUTDOWN_DEADLINE_MS }, "shutdown did not finish in time; exiting");
      exit(1);
    }, SHUTDOWN_DEADLINE_MS).unref();
    server.close().then(
      () => exit(exitCode),
      (error: unknown) => {
        if (exiting) return;
        logger.error({ err: error }, "shutdown failed");
        exit(1);
      },
    );
  };
  // Kept for every signal, not once: without a handler the next one would take Node's default and
  // kill the process mid-delivery (`npm start` + Ctrl-C delivers two SIGINTs, the terminal's and npm's).
  process.on("SIGTERM", () => shutdown("SIGTERM"));
  process.on("SIGINT", () => shutdown("SIGINT"));
  // A stray rejection is a bug to log, never a reason to drop every request in flight.
  process.on("unhandledRejection", (reason) => {
    if (!exiting) logger.error({ err: reason }, "unhandled rejection");
  });
  const unknown = unknownEnvironmentVariables();
  if (unknown.length > 0)
    logger.warn({ variables: unknown }, "ignoring VERIFYD_* variables verifyd does not read (misspelt?)");
  // The port listened on, which VERIFYD_PORT=0 leaves to the system.
  const address = server.fastify.server.address();
  const port = typeof address === "object" && address ? address.port : config.port;
  logger.info({ host: config.host, port, mode: config.mode }, "verifyd listening");
  return undefined;
}

async function migrate(config: Config): Promise<number> {
  if (isClusterMode(config)) {
    // Cluster mode: the durable schema is PostgreSQL's; Redis keys need no migration (they expire).
    const applied = await migratePostgresDatabase(config.databaseUrl, config.databaseSchema, {
      // What a migration that found a table locked waits for, while it tries again.
      logger: {
        warn: (detail, message) => console.error(`verifyd migrate: ${message} ${JSON.stringify(detail)}`),
      },
    }).catch((error: unknown) => {
      // Named as the server's start and the `apps` commands name it (a bare "connect ECONNREFUSED").
      throw postgresUnusable(error);
    });
    console.log(JSON.stringify({ applied }));
    return 0;
  }
  const path = sqlitePath(config.dataDir);
  try {
    // The database alone, not the stores: they prepare statements on tables this command creates.
    const db = openSqliteDatabase({ path, migrate: false });
    try {
      console.log(JSON.stringify({ applied: migrateSqlite(db) }));
    } finally {
      db.close();
    }
  } catch (error) {
    const named = sqliteFileError("migrate", path, error);
    if (named === undefined) throw error;
    console.error(named);
    return 1;
  }
  return 0;
}

async function apps(config: Config, command: Command & { name: `apps ${string}` }): Promise<number> {
  const { backend, apps: directory } = await openStore(config, undefined, undefined, { serving: false });
  try {
    switch (command.name) {
      case "apps create":
        return await createApp(directory, command.appName);
      case "apps list":
        return await listApps(directory);
      case "apps disable":
        return await disableApp(directory, command.id);
      case "apps revoke-key":
        return await revokeKey(config, directory, command.id, command.apiKey);
    }
  } finally {
    await backend.close();
  }
}

async function createApp(directory: AppDirectory, name: string): Promise<number> {
  const { apiKey, apiKeyHash } = mintApiKey();
  // The id is the client id too: neither may be another app's (a config app may have set its
  // client id to what this name gives). The store checks both as it inserts, so two commands run
  // at once never take one id (the later one's key would replace the earlier one's).
  const base = slug(name);
  for (let suffix = 1; ; suffix++) {
    const id = suffix === 1 ? base : `${base}-${suffix}`;
    const app = newMintedApp({ id, clientId: id, name, apiKeyHashes: [apiKeyHash] });
    const created = await orRefusal("apps create", () => directory.create(app));
    if (created === REFUSED) return 1;
    if (created) {
      console.log(JSON.stringify({ id, client_id: id, api_key: apiKey }));
      return 0;
    }
  }
}

async function listApps(directory: AppDirectory): Promise<number> {
  const list = await directory.list();
  console.log(
    JSON.stringify(
      list.map((app) => ({
        id: app.id,
        client_id: app.clientId,
        name: app.name,
        disabled: app.disabled,
      })),
    ),
  );
  return 0;
}

async function disableApp(directory: AppDirectory, id: string): Promise<number> {
  // Changed as stored (without the global templates `byId` lays under it, which would be pinned
  // into the app for good), in one write: another command's change to it at the same time stays.
  const app = await orRefusal("apps disable", () =>
    directory.update(id, (stored) => ({ ...stored, disabled: true })),
  );
  if (app === REFUSED) return 1;
  if (!app) {
    console.error(`apps disable: no app "${id}"`);
    return 1;
  }
  console.log(JSON.stringify({ id: app.id, disabled: true }));
  return 0;
}

async function revokeKey(
  config: Config,
  directory: AppDirectory,
  id: string,
  given: string,
): Promise<number> {
  // "-" reads the key from stdin, keeping it out of the shell's history and `ps`.
  const apiKey = given === "-" ? (await readAll(process.stdin)).trim() : given;
  const app = await directory.stored(id);
  if (!app) {
    console.error(`apps revoke-key: no app "${id}"`);
    return 1;
  }
  const hash = sha256Hex(apiKey);
  // Any `apps` command's sync would give it back at once, the server's start too.
  const listedAt = config.apps.findIndex((each) => each.apiKeys?.includes(apiKey) ?? false);
  if (listedAt >= 0) {
    console.error(
      `apps revoke-key: the config file gives this key (apps/${listedAt}/apiKeys): take it out of the file and restart the server`,
    );
    return 1;
  }
  if (!app.apiKeyHashes.includes(hash)) {
    console.error(`apps revoke-key: app "${app.id}" has no such key`);
    return 1;
  }
  // Taken off the app as stored when it is written, so another command's change at the same time
  // (a second key revoked) stays. The file's record of the keys it gave loses it too, so a later
  // start does not count it.
  const revoked = await orRefusal("apps revoke-key", () =>
    directory.update(id, (stored) => {
      const synced = stored as App & { fileApiKeyHashes?: string[] };
      return {
        ...synced,
        apiKeyHashes: synced.apiKeyHashes.filter((each) => each !== hash),
        ...(synced.fileApiKeyHashes
          ? { fileApiKeyHashes: synced.fileApiKeyHashes.filter((each) => each !== hash) }
          : {}),
      };
    }),
  );
  if (revoked === REFUSED) return 1;
  if (!revoked) {
    console.error(`apps revoke-key: no app "${id}"`);
    return 1;
  }
  console.log(JSON.stringify({ id: app.id, revoked: true, keys_left: revoked.apiKeyHashes.length }));
  return 0;
}

/** What `orRefusal` answers for a write the store refused. */
const REFUSED = Symbol("refused");

/**
 * A write's result, or REFUSED with the store's refusal (a client id or API key another app
 * holds, after a race with another writer) printed as the command's error.
 */
async function orRefusal<T>(command: string, write: () => Promise<T>): Promise<T | typeof REFUSED> {
  try {
    return await write();
  } catch (error) {
    if (error instanceof OtpError && error.code === "VALIDATION_FAILED") {
      console.error(`${command}: ${error.message}`);
      return REFUSED;
    }
    throw error;
  }
}

function slug(name: string): string {
  const base = name
    .toLowerCase()
    .normalize("NFKD")
    // NFKD splits "é" into "e" and a combining accent: the accent goes, the letter stays
    .replace(/\p{M}/gu, "")
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, 40);
  return base || "app";
}

async function readAll(stream: NodeJS.ReadableStream): Promise<string> {
  let text = "";
  for await (const chunk of stream) text += String(chunk);
  return text;
}
