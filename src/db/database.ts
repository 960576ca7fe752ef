/**
 * Connection pools to the job database. The service opens several, each with its own time limits
 * (see src/service.ts): its own queries (HTTP, history, sweeper), the handlers' queries (which
 * keep their task's time limit), one small pool per graphile-worker runner, and the heartbeat
 * thread's single connection (src/reliability/heartbeat-thread.ts).
 *
 * Every connection of these pools (makePool) gets, when the settings say so:
 * - a connect timeout;
 * - a statement timeout and an idle-in-transaction timeout, enforced by the server;
 * - a client-side query timeout a little longer than the statement timeout: a half-open connection
 *   (the server or a proxy between stopped answering without closing) never answers, so only the
 *   client can notice. node-postgres then leaves the connection busy with the lost query, so the
 *   connection is destroyed and the pool opens a fresh one;
 * - the statements of src/db/prepared-statements.ts sent by name, prepared once per connection
 *   (always, settings or not);
 * - TCP keepalive probes, which notice a dead peer on an idle connection (LISTEN) when nothing
 *   answers TCP any more.
 */
import { Kysely, PostgresDialect } from "kysely";
import pg from "pg";
import type { Logger } from "../observability/logger.ts";
import { NamingClient } from "./prepared-statements.ts";
import type { Database } from "./schema.ts";

export type Db = Kysely<Database>;

/** Time limits of every connection; null fields are off. */
export interface ConnectionSettings {
  connectTimeoutMs: number;
  /** Server-side limit of one statement; the client gives up `QUERY_TIMEOUT_GRACE_MS` later. */
  statementTimeoutMs: number | null;
  idleInTransactionTimeoutMs: number | null;
  /** Idle time before the first TCP keepalive probe; probes then go every third of it, 3 unanswered ones end the connection. */
  keepAliveIdleMs: number;
}

/** How much longer than the statement timeout the client waits for an answer before it gives up on the connection. */
export const QUERY_TIMEOUT_GRACE_MS = 5000;

export interface DatabaseHandle {
  pool: pg.Pool;
  db: Db;
  /** A further pool to the same database, closed with this handle (or earlier by the caller). */
  derive(options: DerivedPoolOptions): DerivedDatabase;
  close(): Promise<void>;
}

export interface DerivedPoolOptions {
  max: number;
  /** What pg_stat_activity shows; graphile-worker runners identify themselves with it (src/worker/job-control.ts). */
  applicationName: string;
  /** Overrides the handle's statement timeout (and with it the query and idle-in-transaction timeouts); null turns them off. */
  statementTimeoutMs?: number | null;
}

export interface DerivedDatabase {
  pool: pg.Pool;
  db: Db;
  close(): Promise<void>;
}

/** Connections beyond the workers' own in the service's pool: HTTP requests, history, the sweeper, health checks. */
export const POOL_OVERHEAD = 8;

export interface DatabaseOptions {
  maxConnections: number;
  logger: Logger;
  /** Time limits; without them a connection waits as long as node-postgres does (forever). */
  settings?: ConnectionSettings;
  applicationName?: string;
}

export function makeDatabase(connectionString: string, options: DatabaseOptions): DatabaseHandle {
  const { logger, settings } = options;
  const main = openDatabase(makePool(connectionString, { max: options.maxConnections, applicationName: options.applicationName ?? "observing-jobs", settings, logger }));
  const derived = new Set<DerivedDatabase>();
  let closed = false;
  return {
    pool: main.pool,
    db: main.db,
    derive(derivedOptions) {
      const statementTimeoutMs = derivedOptions.statementTimeoutMs === undefined ? settings?.statementTimeoutMs ?? null : derivedOptions.statementTimeoutMs;
      const pool = makePool(connectionString, {
        max: derivedOptions.max,
        applicationName: derivedOptions.applicationName,
        settings: settings && {
          ...settings,
          statementTimeoutMs,
          // A transaction may stay idle while its statements may run: the same limit.
          idleInTransactionTimeoutMs: statementTimeoutMs === null ? null : Math.max(statementTimeoutMs, settings.idleInTransactionTimeoutMs ?? 0),
        },
        logger,
      });
      const database = openDatabase(pool);
      const handle: DerivedDatabase = {
        ...database,
        async close() {
          derived.delete(handle);
          await database.close();
        },
      };
      derived.add(handle);
      return handle;
    },
    async close() {
      if (closed) return;
      closed = true;
      for (const handle of [...derived]) await handle.close();
      await main.close();
    },
  };
}

function openDatabase(pool: pg.Pool): DerivedDatabase {
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  let closed = false;
  return {
    pool,
    db,
    async close() {
      if (closed) return;
      closed = true;
      // Kysely's destroy ends the pool it was given, but only once Kysely has used it.
      await db.destroy();
      if (!pool.ended) await pool.end();
    },
  };
}

interface PoolOptions {
  max: number;
  applicationName: string;
  settings: ConnectionSettings | undefined;
  logger: Logger;
}

/** A node-postgres pool whose connections carry the time limits of `settings`. */
export function makePool(connectionString: string, options: PoolOptions): pg.Pool {
  const { settings, logger } = options;
  const statementTimeoutMs = settings?.statementTimeoutMs ?? null;
  const pool = new pg.Pool({
    connectionString,
    max: options.max,
    application_name: options.applicationName,
    ...(settings
      ? {
          connectionTimeoutMillis: settings.connectTimeoutMs,
          keepAlive: true,
          keepAliveInitialDelayMillis: settings.keepAliveIdleMs,
          ...(statementTimeoutMs !== null ? { statement_timeout: statementTimeoutMs, [GUARD_TIMEOUT_OPTION]: statementTimeoutMs + QUERY_TIMEOUT_GRACE_MS } : {}),
          ...(settings.idleInTransactionTimeoutMs !== null ? { idle_in_transaction_session_timeout: settings.idleInTransactionTimeoutMs } : {}),
        }
      : {}),
    Client: settings && statementTimeoutMs !== null ? GuardedClient : NamingClient,
  });
  // An idle client losing its connection (database restart) must not crash the process.
  pool.on("error", (error) => logger.warn({ err: error }, "idle database connection failed"));
  pool.on("connect", (client) => {
    client.on("error", (error) => logger.warn({ err: error }, "database connection failed"));
    if (settings) setKeepAlive(client, settings.keepAliveIdleMs);
  });
  return pool;
}

/** node-postgres sets only the first probe's delay; the interval and count decide how soon a dead peer is noticed. */
export function setKeepAlive(client: pg.Client | pg.PoolClient, idleMs: number): void {
  const stream = (client as unknown as { connection?: { stream?: { setKeepAlive?: (options: object) => void } } }).connection?.stream;
  stream?.setKeepAlive?.({ enable: true, initialDelay: idleMs, interval: Math.max(1000, Math.round(idleMs / 3)), count: 3 });
}

/** The pool option GuardedClient reads its query time limit from (node-postgres ignores options it does not know). */
const GUARD_TIMEOUT_OPTION = "guardQueryTimeoutMs";
/** A time limit that fires this much later than due was held up by this process, not by the server. */
const STALL_TOLERANCE_MS = 1000;
/** After such a stall, how long the answer gets to be read before the connection is given up. */
const AFTER_STALL_GRACE_MS = 2000;

/**
 * A client that gives up its connection when a query gets no answer in time: a half-open
 * connection (the server gone without a word) would otherwise hold the query, and every query
 * queued behind it on that connection, for as long as TCP keeps it. Destroying the socket fails
 * them and makes the pool replace the connection.
 *
 * Not node-postgres's own `query_timeout`: its timer fires as soon as the event loop runs again
 * after a stall (a handler that blocked it, a long GC pause, SIGSTOP), before the answer already
 * waiting in the socket is read, so every query in flight across the stall would fail and a
 * fetch graphile-worker had committed would leave its job locked with no attempt running. A limit
 * that fires late here waits a little longer for the socket first (once). Applies to promise and
 * callback queries (Kysely, graphile-worker, pg-pool's pool.query); a submittable (cursor, stream)
 * has no client-side limit.
 */
class GuardedClient extends NamingClient {
  readonly #timeoutMs: number;

  constructor(config?: pg.ClientConfig & { [GUARD_TIMEOUT_OPTION]?: number }) {
    super(config);
    this.#timeoutMs = config?.[GUARD_TIMEOUT_OPTION] ?? 0;
  }

  override query(...args: unknown[]): never {
    if (this.#timeoutMs <= 0) return (super.query as (...a: unknown[]) => never)(...args);
    const stop = this.#arm();
    // pg-pool's pool.query (graphile-worker's cron, the readiness probe) passes a callback.
    const callback = typeof args.at(-1) === "function" ? (args.at(-1) as (...a: unknown[]) => void) : undefined;
    if (callback) {
      args[args.length - 1] = (...results: unknown[]) => {
        stop();
        callback(...results);
      };
    }
    const result = (super.query as (...a: unknown[]) => unknown)(...args);
    if (result instanceof Promise) void result.then(stop, stop);
    // A submittable (a cursor, a stream) ends when its consumer says: no limit here.
    else if (!callback) stop();
    return result as never;
  }

  /** Starts the limit of one query; returns what clears it. Fires late at most once: a second stall is not waited out. */
  #arm(): () => void {
    let timer: NodeJS.Timeout | undefined;
    let waitedOutStall = false;
    const arm = (ms: number) => {
      const due = performance.now() + ms;
      timer = setTimeout(() => {
        if (!waitedOutStall && performance.now() - due > STALL_TOLERANCE_MS) {
          waitedOutStall = true;
          arm(AFTER_STALL_GRACE_MS);
        } else {
          destroyConnection(this, new Error(`Query read timeout: no answer within ${this.#timeoutMs} ms; connection abandoned`));
        }
      }, ms);
    };
    arm(this.#timeoutMs);
    return () => clearTimeout(timer);
  }
}

/** Ends a client's socket at once (no goodbye: the peer is not answering). */
export function destroyConnection(client: pg.Client, reason = new Error("query timed out: connection abandoned")): void {
  (client as unknown as { connection?: { stream?: { destroy?: (error?: Error) => void } } }).connection?.stream?.destroy?.(reason);
}
