/**
 * Database connections with time limits, through a local TCP proxy that can stop forwarding
 * without closing (a half-open connection: both ends keep acknowledging TCP, nothing answers).
 * Before, no connection had a connect, statement or idle-in-transaction timeout or keepalive: a
 * query or a heartbeat on such a connection hung forever, and the instance then looked dead.
 */
import { sql } from "kysely";
import { afterEach, beforeEach, describe, expect } from "vitest";
import { makeDatabase, QUERY_TIMEOUT_GRACE_MS, type ConnectionSettings, type DatabaseHandle } from "../../src/db/database.ts";
import { describeInstance, HeartbeatWriter } from "../../src/reliability/heartbeat.ts";
import { test, waitFor, type TestEnv } from "../helpers/env.ts";
import { startTcpProxy, type TcpProxy } from "../helpers/tcp-proxy.ts";

const SETTINGS: ConnectionSettings = { connectTimeoutMs: 2000, statementTimeoutMs: 1000, idleInTransactionTimeoutMs: 1500, keepAliveIdleMs: 10_000 };

let proxy: TcpProxy;
let database: DatabaseHandle | undefined;

beforeEach<{ env: TestEnv }>(async ({ env }) => {
  proxy = await startTcpProxy(env.database.url);
});
afterEach(async () => {
  await database?.close();
  database = undefined;
  await proxy.close();
});

describe("a half-open connection", () => {
  test("is not what a stall of this process looks like: a query answered while the event loop was blocked past its limit succeeds", async ({ env }) => {
    database = makeDatabase(env.database.url, { maxConnections: 1, logger: env.logger, settings: SETTINGS });
    const db = database.db;
    await sql`select 1`.execute(db);
    const answer = sql<{ ok: number }>`select 1 as ok from pg_sleep(0.1)`.execute(db);
    // Blocked (as a CPU-bound handler or a long GC would) well past the client-side limit; the
    // answer arrives meanwhile and waits in the socket. From the check phase, as a handler resumed
    // by setImmediate would: the event loop's timers run next, before the socket is read.
    await new Promise<void>((resolve) =>
      setImmediate(() => {
        const until = performance.now() + SETTINGS.statementTimeoutMs! + QUERY_TIMEOUT_GRACE_MS + 1500;
        while (performance.now() < until) {
          // busy: nothing else on this thread runs
        }
        resolve();
      }),
    );
    await expect(answer).resolves.toMatchObject({ rows: [{ ok: 1 }] });
  });

  test("fails the query in flight within the statement timeout plus the grace, and the pool replaces the connection", async ({ env }) => {
    database = makeDatabase(proxy.url, { maxConnections: 1, logger: env.logger, settings: SETTINGS });
    // Through Kysely, as the service's queries go: it checks a client out and releases it without
    // an error, as graphile-worker does (pg-pool's own pool.query would throw the client away).
    const db = database.db;
    await sql`select 1`.execute(db);
    proxy.stall();
    const started = performance.now();
    await expect(sql`select 1`.execute(db)).rejects.toThrow(/Query read timeout/);
    const noticedMs = performance.now() - started;
    expect(noticedMs).toBeGreaterThanOrEqual(SETTINGS.statementTimeoutMs! + QUERY_TIMEOUT_GRACE_MS - 100);
    expect(noticedMs).toBeLessThan(SETTINGS.statementTimeoutMs! + QUERY_TIMEOUT_GRACE_MS + 3000);
    // The only connection of the pool was the stalled one: kept, this would queue behind the lost query forever.
    const { rows } = await sql<{ ok: number }>`select 1 as ok`.execute(db);
    expect(rows).toEqual([{ ok: 1 }]);
    expect(proxy.accepted()).toBe(2);
  });

  test("fails a pg-pool query too (graphile-worker's cron and the readiness probe use pool.query, which passes a callback)", async ({ env }) => {
    database = makeDatabase(proxy.url, { maxConnections: 1, logger: env.logger, settings: SETTINGS });
    await database.pool.query("select 1");
    proxy.stall();
    const started = performance.now();
    await expect(database.pool.query("select 1")).rejects.toThrow(/Query read timeout/);
    expect(performance.now() - started).toBeLessThan(SETTINGS.statementTimeoutMs! + QUERY_TIMEOUT_GRACE_MS + 3000);
  });

  test("keeps the heartbeat thread beating: it gives up the stalled connection and beats on a new one", async ({ env }) => {
    await env.db.deleteFrom("observing_jobs.worker_heartbeats").execute();
    const logs = env.logs;
    logs.length = 0;
    // Beats every 500 ms, each given up after 2 s; rescue after 6 s.
    const heartbeats = new HeartbeatWriter(describeInstance(null), {
      connectionString: proxy.url,
      intervalMs: 500,
      rescueAfterMs: 6000,
      stallLimitMs: 60_000,
      connectTimeoutMs: 2000,
      logger: env.logger,
      onDeclaredDead: () => {},
    });
    try {
      await heartbeats.register("pool-half-open", "main", []);
      const lastSeen = async () => (await env.db.selectFrom("observing_jobs.worker_heartbeats").select("last_seen").where("pool_id", "=", "pool-half-open").executeTakeFirstOrThrow()).last_seen;
      proxy.stall();
      const before = await lastSeen();
      const stalledAt = Date.now();
      const after = await waitFor(async () => {
        const seen = await lastSeen();
        return seen.getTime() > before.getTime() + 100 ? seen : undefined;
      }, { timeoutMs: 10_000, message: "a beat on a new connection" });
      // Noticed within one beat timeout (2 s) plus a reconnect: far inside the 6 s rescue threshold.
      expect(Date.now() - stalledAt).toBeLessThan(5000);
      expect(after.getTime() - before.getTime()).toBeLessThan(6000);
      expect(proxy.accepted()).toBeGreaterThanOrEqual(2);
      expect(heartbeats.leaseHolds("pool-half-open")).toBe(true);
      await waitFor(() => logs.some((line) => line.message === "could not write heartbeats; will retry on a new connection"), { message: "the failed beat to be logged" });
    } finally {
      await heartbeats.close();
    }
  });

  test("a connection attempt that gets no answer gives up at the connect timeout", async ({ env }) => {
    database = makeDatabase(proxy.url, { maxConnections: 1, logger: env.logger, settings: SETTINGS });
    proxy.stall({ stallNew: true });
    const started = performance.now();
    await expect(database.pool.query("select 1")).rejects.toThrow(/timeout/i);
    expect(performance.now() - started).toBeLessThan(SETTINGS.connectTimeoutMs + 2000);
  });
});

describe("the server's time limits", () => {
  test("a statement over the statement timeout is cancelled; a pool derived with a longer one (a task's) lets it run", async ({ env }) => {
    database = makeDatabase(env.database.url, { maxConnections: 1, logger: env.logger, settings: SETTINGS });
    await expect(database.pool.query("select pg_sleep(2)")).rejects.toMatchObject({ code: "57014", message: expect.stringMatching(/statement timeout/) });
    const tasks = database.derive({ max: 1, applicationName: "observing-jobs tasks", statementTimeoutMs: 10_000 });
    await expect(tasks.pool.query("select pg_sleep(1.5)")).resolves.toBeDefined();
    const { rows } = await tasks.pool.query<{ limit: string }>("select current_setting('statement_timeout') as limit");
    expect(rows[0]!.limit).toBe("10s");
  });

  test("a session idle in a transaction past its limit is ended by the server, its locks released", async ({ env }) => {
    database = makeDatabase(env.database.url, { maxConnections: 1, logger: env.logger, settings: SETTINGS, applicationName: "idle-in-transaction-probe" });
    const client = await database.pool.connect();
    client.on("error", () => {});
    try {
      await client.query("begin");
      await client.query("select 1");
      await waitFor(
        async () => (await sql<{ n: number }>`select count(*)::int as n from pg_stat_activity where application_name = 'idle-in-transaction-probe'`.execute(env.db)).rows[0]!.n === 0,
        { timeoutMs: 10_000, message: "the server to end the idle transaction's session" },
      );
      await expect(client.query("select 1")).rejects.toThrow();
    } finally {
      client.release(true);
    }
  });
});
