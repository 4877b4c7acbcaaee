import { parseArgs } from "node:util";
import { newMintedApp } from "./config/apps-sync.js";
import { type Config, ConfigError, isClusterMode, loadConfig } from "./config/load.js";
import { type AppDirectory, mintApiKey } from "./core/apps/apps.js";
import { OtpError } from "./core/errors.js";
import { sha256Hex } from "./core/ids.js";
import type { App } from "./core/types.js";
import { REQUEST_TIMEOUT_MS } from "./http/app.js";
import { createLogger } from "./observability/logger.js";
import { openStore, startServer } from "./server.js";
import { migratePostgresDatabase } from "./storage/postgres/postgres-migrator.js";
import { sqlitePath } from "./storage/sqlite/index.js";
import { migrateSqlite, openSqliteDatabase } from "./storage/sqlite/sqlite-database.js";

// Past the slowest request's timeout (and Node's check of it) and a delivery try's.
const SHUTDOWN_DEADLINE_MS = 2 * REQUEST_TIMEOUT_MS;

const USAGE = `usage: verifyd [serve]
       verifyd migrate
       verifyd apps create --name NAME
       verifyd apps list
       verifyd apps disable ID
       verifyd apps revoke-key ID API_KEY|-`;

/** Runs one CLI command; resolves to the exit code (undefined while a server keeps running). */
export async function runCli(args: string[]): Promise<number | undefined> {
  const [command = "serve", ...rest] = args;
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
    switch (command) {
      case "serve":
        return await serve(config);
      case "migrate":
        return await migrate(config);
      case "apps":
        return await apps(config, rest);
      case "help":
      case "--help":
        console.log(USAGE);
        return 0;
      default:
        console.error(`unknown command "${command}"\n${USAGE}`);
        return 2;
    }
  } catch (error) {
    // What only the store can tell (the file's apps against those stored): named like the rest.
    if (error instanceof ConfigError) {
      console.error(error.message);
      return 1;
    }
    throw error;
  }
}

async function serve(config: Config): Promise<undefined> {
  const logger = createLogger({ level: config.logLevel, devCodes: config.mode === "dev" });
  const server = await startServer(config, logger);
  let closing = false;
  const shutdown = (signal: string) => {
    if (closing) {
      logger.warn(
        { signal },
        "already shutting down: waiting for the requests and deliveries in flight (SIGKILL stops at once)",
      );
      return;
    }
    closing = true;
    logger.info(
      { signal },
      "shutting down: finishing the requests and deliveries in flight; queued messages go out at the next start",
    );
    // Requests time out after REQUEST_TIMEOUT_MS and deliveries after their try's timeout; a
    // shutdown still running well past both is stuck, and exits rather than linger unserving.
    setTimeout(() => {
      logger.error({ afterMs: SHUTDOWN_DEADLINE_MS }, "shutdown did not finish in time; exiting");
      logger.flush(() => process.exit(1));
    }, SHUTDOWN_DEADLINE_MS).unref();
    server.close().then(
      () => logger.flush(() => process.exit(0)),
      (error: unknown) => {
        logger.error({ err: error }, "shutdown failed");
        logger.flush(() => process.exit(1));
      },
    );
  };
  // Kept for every signal, not once: without a handler the next one would take Node's default and
  // kill the process mid-delivery (`npm start` + Ctrl-C delivers two SIGINTs, the terminal's and npm's).
  process.on("SIGTERM", () => shutdown("SIGTERM"));
  process.on("SIGINT", () => shutdown("SIGINT"));
  // A stray rejection is a bug to log, never a reason to drop every request in flight.
  process.on("unhandledRejection", (reason) => logger.error({ err: reason }, "unhandled rejection"));
  logger.info({ host: config.host, port: config.port, mode: config.mode }, "verifyd listening");
  return undefined;
}

async function migrate(config: Config): Promise<number> {
  if (isClusterMode(config)) {
    // Cluster mode: the durable schema is PostgreSQL's; Redis keys need no migration (they expire).
    const applied = await migratePostgresDatabase(config.databaseUrl, config.databaseSchema);
    console.log(JSON.stringify({ applied }));
    return 0;
  }
  // The database alone, not the stores: they prepare statements on tables this command creates.
  const db = openSqliteDatabase({ path: sqlitePath(config.dataDir), migrate: false });
  try {
    console.log(JSON.stringify({ applied: migrateSqlite(db) }));
  } finally {
    db.close();
  }
  return 0;
}

async function apps(config: Config, args: string[]): Promise<number> {
  const [subcommand, ...rest] = args;
  const { backend, apps: directory } = await openStore(config, undefined, undefined, { serving: false });
  try {
    if (subcommand === "create") {
      const { values } = parseArgs({ args: rest, options: { name: { type: "string" } } });
      const name = values.name?.trim();
      if (!name) {
        console.error("apps create: --name NAME is required");
        return 2;
      }
      // The id is the client id too: neither may be another app's (a config app may have set its
      // client id to what this name gives).
      const id = await freeId(
        slug(name),
        async (candidate) => (await directory.byId(candidate)) ?? (await directory.byClientId(candidate)),
      );
      const { apiKey, apiKeyHash } = mintApiKey();
      const saved = await saveApp(
        directory,
        newMintedApp({ id, clientId: id, name, apiKeyHashes: [apiKeyHash] }),
        "apps create",
      );
      if (!saved) return 1;
      console.log(JSON.stringify({ id, client_id: id, api_key: apiKey }));
      return 0;
    }
    if (subcommand === "list") {
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
    if (subcommand === "disable") {
      const id = rest[0];
      // As stored: `byId` lays the global templates under the app's, and saving that would pin
      // today's global templates into this app for good.
      const app = id ? await directory.stored(id) : null;
      if (!app) {
        console.error(`apps disable: no app "${id ?? ""}"`);
        return 1;
      }
      if (!(await saveApp(directory, { ...app, disabled: true }, "apps disable"))) return 1;
      console.log(JSON.stringify({ id: app.id, disabled: true }));
      return 0;
    }
    if (subcommand === "revoke-key") {
      // "-" reads the key from stdin, keeping it out of the shell's history and `ps`.
      const [id, given] = rest;
      const apiKey = given === "-" ? (await readAll(process.stdin)).trim() : given;
      const app = id ? await directory.stored(id) : null;
      if (!app) {
        console.error(`apps revoke-key: no app "${id ?? ""}"`);
        return 1;
      }
      const hash = sha256Hex(apiKey ?? "");
      // Any `apps` command's sync would give it back at once, the server's start too.
      const listedAt = config.apps.findIndex((each) => each.apiKeys?.includes(apiKey ?? "") ?? false);
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
      // The file's record of the keys it gave goes too, so a later start does not count it.
      const synced = app as App & { fileApiKeyHashes?: string[] };
      const revoked = {
        ...synced,
        apiKeyHashes: app.apiKeyHashes.filter((each) => each !== hash),
        ...(synced.fileApiKeyHashes
          ? { fileApiKeyHashes: synced.fileApiKeyHashes.filter((each) => each !== hash) }
          : {}),
      };
      if (!(await saveApp(directory, revoked, "apps revoke-key"))) return 1;
      console.log(JSON.stringify({ id: app.id, revoked: true, keys_left: revoked.apiKeyHashes.length }));
      return 0;
    }
    console.error(USAGE);
    return 2;
  } finally {
    await backend.close();
  }
}

/**
 * Saves an app, printing the store's refusal (a client id or API key another app holds, after a
 * race with another writer) as the command's error; false when refused.
 */
async function saveApp(directory: AppDirectory, app: App, command: string): Promise<boolean> {
  try {
    await directory.save(app);
    return true;
  } catch (error) {
    if (error instanceof OtpError && error.code === "VALIDATION_FAILED") {
      console.error(`${command}: ${error.message}`);
      return false;
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

async function freeId(base: string, exists: (id: string) => Promise<unknown>): Promise<string> {
  if (!(await exists(base))) return base;
  for (let suffix = 2; ; suffix++) {
    const candidate = `${base}-${suffix}`;
    if (!(await exists(candidate))) return candidate;
  }
}

async function readAll(stream: NodeJS.ReadableStream): Promise<string> {
  let text = "";
  for await (const chunk of stream) text += String(chunk);
  return text;
}
