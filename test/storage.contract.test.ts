import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClusterBackend } from "../src/storage/cluster/index.js";
import { accountDirectoryContract } from "../src/storage/contract/account-directory.contract.js";
import { appStoreContract } from "../src/storage/contract/app-store.contract.js";
import { captchaStoreContract } from "../src/storage/contract/captcha-store.contract.js";
import { counterStoreContract } from "../src/storage/contract/counter-store.contract.js";
import { devInboxContract } from "../src/storage/contract/dev-inbox.contract.js";
import { codeRecord } from "../src/storage/contract/fixtures.contract.js";
import { outboxStoreContract } from "../src/storage/contract/outbox-store.contract.js";
import { sendLogContract } from "../src/storage/contract/send-log.contract.js";
import { verificationStoreContract } from "../src/storage/contract/verification-store.contract.js";
import { createPostgresAccountDirectory } from "../src/storage/postgres/postgres-account-directory.js";
import { createPostgresAppStore } from "../src/storage/postgres/postgres-app-store.js";
import { createPostgresDevInbox } from "../src/storage/postgres/postgres-dev-inbox.js";
import { migratePostgres } from "../src/storage/postgres/postgres-migrator.js";
import {
  createPostgresDeliveryList,
  createPostgresOutboxStore,
} from "../src/storage/postgres/postgres-outbox-store.js";
import { createPostgresOutboxWriter } from "../src/storage/postgres/postgres-outbox-writer.js";
import { createPostgresPool } from "../src/storage/postgres/postgres-pool.js";
import { createPostgresSendLog } from "../src/storage/postgres/postgres-send-log.js";
import { createRedisCaptchaStore } from "../src/storage/redis/redis-captcha-store.js";
import { connectRedis } from "../src/storage/redis/redis-client.js";
import { createRedisCounterStore } from "../src/storage/redis/redis-counter-store.js";
import { RedisKeys } from "../src/storage/redis/redis-keys.js";
import { createSqliteBackend, type SqliteBackend } from "../src/storage/sqlite/index.js";
import {
  backendMissing,
  deleteRedisPrefix,
  dropSchema,
  probePostgres,
  probeRedis,
  uniqueName,
} from "./cluster/backends.js";

/**
 * Every storage contract suite against every backend (STYLE.md §8). SQLite always runs (a temp
 * file per suite); Redis and PostgreSQL run when VERIFYD_TEST_REDIS_URL / VERIFYD_TEST_DATABASE_URL
 * are set, each suite in its own PostgreSQL schema and Redis key prefix, dropped afterwards, so
 * parallel test files and re-runs never see each other's rows. Nothing is skipped per case: a
 * backend either runs a whole suite or (unset URL) the suite is skipped with its reason printed,
 * and with VERIFYD_TEST_REQUIRE_BACKENDS=1 an unreachable backend fails instead.
 */

const silent = { debug() {}, info() {}, warn() {}, error() {} };

function openSqlite(): { backend: SqliteBackend; close(): Promise<void> } {
  const dir = mkdtempSync(join(tmpdir(), "verifyd-contract-"));
  const backend = createSqliteBackend({ path: join(dir, "verifyd.db") });
  return {
    backend,
    async close() {
      backend.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

verificationStoreContract("sqlite", async () => {
  const { backend, close } = openSqlite();
  return { store: backend.verifications, counters: backend.counters, outbox: backend.outbox, close };
});
counterStoreContract("sqlite", async () => {
  const { backend, close } = openSqlite();
  return { counters: backend.counters, close };
});
outboxStoreContract("sqlite", async () => {
  const { backend, close } = openSqlite();
  const sealed = backend.db.prepare("SELECT sealed_code FROM outbox WHERE id = ?");
  return {
    outbox: backend.outbox,
    // The embedded mode queues a message only as part of a send: issue its code with it.
    async enqueue(message) {
      const code = codeRecord(message.appId, message.createdAtMs, {
        id: message.verificationId,
        to: message.to,
        expiresAtMs: message.deliverBeforeMs,
      });
      await backend.verifications.issue(
        { appId: message.appId, counters: [], slotKey: message.id, slotTags: [], code, outbox: message },
        message.createdAtMs,
      );
    },
    deliveries: (appId, verificationId) => backend.verifications.deliveries(appId, verificationId),
    async sealedCodeOf(id) {
      return (sealed.get(id) as { sealed_code: string | null } | undefined)?.sealed_code ?? null;
    },
    close,
  };
});
appStoreContract("sqlite", async () => {
  const { backend, close } = openSqlite();
  return { apps: backend.apps, close };
});
accountDirectoryContract("sqlite", async () => {
  const { backend, close } = openSqlite();
  return { accounts: backend.accounts, close };
});
devInboxContract("sqlite", async () => {
  const { backend, close } = openSqlite();
  return { devInbox: backend.devInbox, close };
});
captchaStoreContract("sqlite", async () => {
  const { backend, close } = openSqlite();
  return { captcha: backend.captcha, close };
});
sendLogContract("sqlite", async () => {
  const { backend, close } = openSqlite();
  return { sendLog: backend.sendLog, close };
});

const [redis, postgres] = await Promise.all([probeRedis(), probePostgres()]);

/** A Redis client under a fresh key prefix, deleted on close. */
async function openRedis(url: string) {
  const prefix = `${uniqueName("redis")}:`;
  const client = await connectRedis({ url, logger: silent });
  return {
    client,
    keys: new RedisKeys(prefix),
    async close() {
      client.disconnect();
      await deleteRedisPrefix(url, prefix);
    },
  };
}

/** A pool on a fresh, migrated schema, dropped on close. */
async function openPostgres(url: string) {
  const schema = uniqueName("pg");
  const pool = createPostgresPool({ url, poolSize: 5, schema, logger: silent });
  await migratePostgres(pool, schema);
  return {
    pool,
    async close() {
      await pool.end();
      await dropSchema(url, schema);
    },
  };
}

if (redis.ok) {
  counterStoreContract("redis", async () => {
    const opened = await openRedis(redis.url);
    return { counters: createRedisCounterStore(opened.client, opened.keys), close: opened.close };
  });
  captchaStoreContract("redis", async () => {
    const opened = await openRedis(redis.url);
    return { captcha: createRedisCaptchaStore(opened.client, opened.keys), close: opened.close };
  });
} else {
  backendMissing("storage contracts: redis", redis.reason);
}

if (postgres.ok) {
  outboxStoreContract("postgres", async () => {
    const { pool, close } = await openPostgres(postgres.url);
    const outbox = createPostgresOutboxStore(pool);
    const writer = createPostgresOutboxWriter(pool, { maxConcurrentCommits: 2 });
    return {
      outbox,
      enqueue: (message) => writer.enqueue(message),
      deliveries: createPostgresDeliveryList(pool),
      async sealedCodeOf(id) {
        const { rows } = await pool.query<{ sealed_code: string | null }>(
          "SELECT sealed_code FROM outbox WHERE id = $1",
          [id],
        );
        return rows[0]?.sealed_code ?? null;
      },
      close,
    };
  });
  appStoreContract("postgres", async () => {
    const { pool, close } = await openPostgres(postgres.url);
    return { apps: createPostgresAppStore(pool), close };
  });
  accountDirectoryContract("postgres", async () => {
    const { pool, close } = await openPostgres(postgres.url);
    return { accounts: createPostgresAccountDirectory(pool), close };
  });
  devInboxContract("postgres", async () => {
    const { pool, close } = await openPostgres(postgres.url);
    return { devInbox: createPostgresDevInbox(pool), close };
  });
  sendLogContract("postgres", async () => {
    const { pool, close } = await openPostgres(postgres.url);
    const sendLog = createPostgresSendLog(pool, silent);
    return {
      sendLog,
      async close() {
        await sendLog.close();
        await close();
      },
    };
  });
} else {
  backendMissing("storage contracts: postgres", postgres.reason);
}

if (redis.ok && postgres.ok) {
  // The cluster VerificationStore is Redis and PostgreSQL together (the outbox row is PostgreSQL's),
  // exercised through createClusterBackend exactly as the server wires it.
  verificationStoreContract("cluster (redis + postgres)", async () => {
    const schema = uniqueName("pg");
    const prefix = `${uniqueName("redis")}:`;
    const backend = await createClusterBackend({
      redisUrl: redis.url,
      databaseUrl: postgres.url,
      poolSize: 5,
      redisPrefix: prefix,
      databaseSchema: schema,
    });
    return {
      store: backend.verifications,
      counters: backend.counters,
      outbox: backend.outbox,
      async close() {
        await backend.close();
        await Promise.all([dropSchema(postgres.url, schema), deleteRedisPrefix(redis.url, prefix)]);
      },
    };
  });
} else if (redis.ok !== postgres.ok) {
  backendMissing("VerificationStore contract: cluster", "the cluster store needs both Redis and PostgreSQL");
}
