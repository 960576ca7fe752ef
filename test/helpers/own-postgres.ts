/**
 * A PostgreSQL server of a test's (or the chaos script's) own, on a free port in a temporary
 * directory, that can be stopped and started again: a database restart, without touching the
 * shared server. The `postgres` database is migrated like a real deployment.
 */
import { chmod, mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pino } from "pino";
import { makeDatabase } from "../../src/db/database.ts";
import { startEmbeddedPostgres, type EmbeddedDatabase } from "../../src/db/embedded-postgres.ts";
import { migrateDatabase } from "../../src/db/migrate.ts";
import { freePort } from "./ports.ts";

export interface OwnPostgres {
  /** Connection string of the migrated database. */
  url: string;
  port: number;
  /** Stops the server (fast shutdown: every connection is cut). */
  stop(): Promise<void>;
  start(): Promise<void>;
  /** Stops the server and removes its data directory. */
  destroy(): Promise<void>;
}

const DATABASE = "observing_jobs";

export async function startOwnPostgres(): Promise<OwnPostgres> {
  const directory = await mkdtemp(path.join(os.tmpdir(), "observing-jobs-own-pg-"));
  // As root, PostgreSQL runs as the `postgres` user, which must be able to reach its data directory.
  await chmod(directory, 0o755);
  const logger = pino({ level: "warn" });
  const port = await freePort();
  const options = { dataDir: path.join(directory, "data"), port, logger, database: DATABASE };
  let server: EmbeddedDatabase | null = await startEmbeddedPostgres(options);
  const url = server.url;
  const database = makeDatabase(url, { maxConnections: 2, logger });
  try {
    await migrateDatabase(database.pool, database.db, logger);
  } finally {
    await database.close();
  }
  return {
    url,
    port,
    async stop() {
      await server?.stop();
      server = null;
    },
    async start() {
      server ??= await startEmbeddedPostgres(options);
    },
    async destroy() {
      await server?.stop();
      server = null;
      await rm(directory, { recursive: true, force: true });
    },
  };
}

