import { parseArgs } from "node:util";
import { type Config, ConfigError, isClusterMode, loadConfig } from "./config/load.js";
import { mintApiKey, newApp } from "./core/apps/apps.js";
import { createLogger } from "./observability/logger.js";
import { openStore, startServer } from "./server.js";
import { migratePostgresDatabase } from "./storage/postgres/postgres-migrator.js";
import { sqlitePath } from "./storage/sqlite/index.js";
import { migrateSqlite, openSqliteDatabase } from "./storage/sqlite/sqlite-database.js";

const USAGE = `usage: verifyd [serve]
       verifyd migrate
       verifyd apps create --name NAME
       verifyd apps list
       verifyd apps disable ID`;

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
  switch (command) {
    case "serve":
      return serve(config);
    case "migrate":
      return migrate(config);
    case "apps":
      return apps(config, rest);
    case "help":
    case "--help":
      console.log(USAGE);
      return 0;
    default:
      console.error(`unknown command "${command}"\n${USAGE}`);
      return 2;
  }
}

async function serve(config: Config): Promise<undefined> {
  const logger = createLogger({ level: config.logLevel, devCodes: config.mode === "dev" });
  const server = await startServer(config, logger);
  let closing = false;
  const shutdown = (signal: string) => {
    if (closing) return;
    closing = true;
    logger.info({ signal }, "shutting down: draining requests and the outbox");
    server.close().then(
      () => logger.flush(() => process.exit(0)),
      (error: unknown) => {
        logger.error({ err: error }, "shutdown failed");
        logger.flush(() => process.exit(1));
      },
    );
  };
  process.once("SIGTERM", () => shutdown("SIGTERM"));
  process.once("SIGINT", () => shutdown("SIGINT"));
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
  const { backend, apps: directory } = await openStore(config);
  try {
    if (subcommand === "create") {
      const { values } = parseArgs({ args: rest, options: { name: { type: "string" } } });
      const name = values.name?.trim();
      if (!name) {
        console.error("apps create: --name NAME is required");
        return 2;
      }
      const id = await freeId(slug(name), (candidate) => directory.byId(candidate));
      const { apiKey, apiKeyHash } = mintApiKey();
      await directory.save(newApp({ id, clientId: id, name, apiKeyHashes: [apiKeyHash] }));
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
      const app = id ? await directory.byId(id) : null;
      if (!app) {
        console.error(`apps disable: no app "${id ?? ""}"`);
        return 1;
      }
      await directory.save({ ...app, disabled: true });
      console.log(JSON.stringify({ id: app.id, disabled: true }));
      return 0;
    }
    console.error(USAGE);
    return 2;
  } finally {
    await backend.close();
  }
}

function slug(name: string): string {
  const base = name
    .toLowerCase()
    .normalize("NFKD")
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
