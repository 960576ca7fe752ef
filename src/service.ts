/**
 * The composition root: config → registry and crontab → database → migrations → heartbeats →
 * runners → sweeper → HTTP. Everything started is released in reverse order by `stop()`, also when
 * start-up fails half way. `stop()` first turns readiness off and drains the runners within the
 * shutdown deadlines (src/reliability/shutdown.ts), while HTTP and heartbeats keep going.
 */
import { EventEmitter } from "node:events";
import type { WorkerEvents } from "graphile-worker";
import type { Config } from "./config.ts";
import { CrontabError, loadCrontab } from "./cron/crontab.ts";
import { connectDatabase, type ConnectedDatabase } from "./db/connect.ts";
import { POOL_OVERHEAD } from "./db/database.ts";
import { assertSchemaCurrent, migrateDatabase } from "./db/migrate.ts";
import { recordInternalTasks } from "./db/internal-tasks.ts";
import { listGlobalCaps, recordGlobalCaps } from "./db/repositories/global-caps.ts";
import { warnAboutExcessPrivileges } from "./db/privileges.ts";
import { buildApp, type App } from "./http/app.ts";
import type { Logger } from "./observability/logger.ts";
import { loadRegistry, MAIN_RUNNER, type TaskRegistry } from "./registry.ts";
import { makeUpstreamClients } from "./upstream/clients.ts";
import { connectionsNeeded, planRunners, startWorker, type WorkerHandle } from "./worker/worker.ts";
import { findPauses } from "./db/repositories/pauses.ts";
import { makeQueueStats } from "./lifecycle/queue-stats.ts";
import { makeCronFreshness } from "./cron/freshness.ts";
import { ServiceMetrics } from "./observability/metrics.ts";
import { describeInstance, HeartbeatWriter, listWorkerPools } from "./reliability/heartbeat.ts";
import { ReadinessSignals } from "./reliability/readiness.ts";
import { settleEndedPool } from "./reliability/pool-settlement.ts";
import { InFlightJobs } from "./worker/in-flight-jobs.ts";
import { PauseWatcher } from "./worker/pause-gate.ts";
import { Sweeper } from "./reliability/sweeper.ts";
import { releaseStartupMemory, type MemoryRelease } from "./startup-memory.ts";

/** How long `releaseStartupMemory` waits for readiness before it collects anyway (LISTEN lost right after start, cron stuck, no beat written). */
const STARTUP_SETTLES_WITHIN_MS = 30_000;

export interface Service {
  /** Where the HTTP server listens, e.g. http://127.0.0.1:8080. */
  url: string;
  app: App;
  worker: WorkerHandle;
  database: ConnectedDatabase;
  registry: TaskRegistry;
  heartbeats: HeartbeatWriter;
  sweeper: Sweeper;
  /**
   * For entry points, once started: waits until the instance is ready, then runs one
   * memory-reducing collection in each of the process's V8 isolates, the main thread's first
   * (src/startup-memory.ts). That blocks the main thread for one full collection (50-60 ms), so it
   * is the entry point's call (src/main.ts and the tests' service entry make it; tests that start
   * services in-process do not). Null if the service began stopping first; a thread's entry is
   * null where its collector could not be reached.
   */
  releaseStartupMemory(): Promise<StartupMemoryRelease | null>;
  /** Readiness off, runners drained within the shutdown deadlines, then HTTP, history and database closed. Safe to call twice. */
  stop(): Promise<void>;
}

export interface ServiceOptions {
  /**
   * The tasks to run instead of those in tasks/. The benchmark (bench/) passes the real tasks plus a
   * no-op task, so it measures the production per-job path without a task file in tasks/.
   */
  registry?: TaskRegistry;
}

/**
 * How an entry point reports a start that failed: a mistake in the crontab is one line that names
 * the file, the line and what is wrong, like a bad setting; anything else comes with its stack.
 */
export function logStartFailure(logger: Logger, error: unknown, what = "observing-jobs"): void {
  const message = `${what} failed to start: ${(error as Error).message}`;
  if (error instanceof CrontabError) logger.fatal(message);
  else logger.fatal({ err: error }, message);
}

export interface StartupMemoryRelease {
  main: MemoryRelease | null;
  heartbeatThread: MemoryRelease | null;
}

/**
 * For entry points, once started: `service.releaseStartupMemory()` in the background, its outcome
 * logged: at debug when both threads collected (it is routine), as a warning naming the thread that
 * did not (idle memory then stays some 20 MB higher; a Node upgrade that hides V8's collector does this).
 */
export function releaseStartupMemoryWhenReady(service: Service, logger: Logger): void {
  service.releaseStartupMemory().then(
    (released) => {
      if (!released) return;
      const missed = (["main", "heartbeatThread"] as const).filter((thread) => released[thread] === null);
      if (missed.length === 0) logger.debug(released, "released the memory start-up used");
      else logger.warn({ ...released, missed }, "could not release the memory start-up used in every thread: V8's collector could not be reached");
    },
    (error: unknown) => logger.warn({ err: error }, "could not release the memory start-up used"),
  );
}

export async function startService(config: Config, logger: Logger, options: ServiceOptions = {}): Promise<Service> {
  const releasers: Array<() => Promise<void>> = [];
  const releaseAll = async () => {
    for (const release of releasers.splice(0).reverse()) {
      try {
        await release();
      } catch (error) {
        logger.error({ err: error }, "error while shutting down");
      }
    }
  };
  try {
    // Cheap checks first: a bad task file or crontab line fails before anything starts.
    const registry = options.registry ?? (await loadRegistry());
    const crontab = await loadCrontab(config.worker.crontabFile, registry);

    // Pools, each with its own limits (src/db/database.ts): the service's own queries (this one:
    // HTTP, history, the sweeper), the handlers' queries (which keep their task's time limit), and
    // one per runner start (opened by the worker). Heartbeats have a connection of their own.
    const plans = planRunners(registry, config.worker.concurrency);
    const database = await connectDatabase(config, logger, POOL_OVERHEAD);
    releasers.push(() => database.close());
    if (config.database.migrateOnStart) {
      // Migrations get no statement timeout: an index on a large table may take a while.
      const migrations = database.derive({ max: 2, applicationName: "observing-jobs migrate", statementTimeoutMs: null });
      try {
        await migrateDatabase(migrations.pool, migrations.db, logger);
      } finally {
        await migrations.close();
      }
    } else await assertSchemaCurrent(database.pool);
    await warnAboutExcessPrivileges(database.pool, logger, config);
    await recordInternalTasks(database.db, registry);
    for (const changed of await recordGlobalCaps(database.db, plans.filter((plan) => plan.globalCap).map((plan) => ({ group: plan.name, slots: plan.concurrency })))) {
      // Every instance now holds this limit, older revisions included; one of those starting later writes its own back.
      logger.warn({ group: changed.group, from: changed.from, to: changed.to }, "this instance changed a global concurrency cap");
    }

    const longestTaskMs = Math.max(...registry.all().map((task) => task.defaults.timeoutMs));
    const tasksDatabase = database.derive({ max: connectionsNeeded(plans), applicationName: "observing-jobs tasks", statementTimeoutMs: longestTaskMs });
    const deps = { db: tasksDatabase.db, registry, upstream: makeUpstreamClients(config), logger, config };
    const queueStats = makeQueueStats(database.db);
    const cronFreshness = makeCronFreshness(database.db, crontab, { registry });
    const workerPools = () => listWorkerPools(database.db);
    const metrics = new ServiceMetrics({ queueStats, cronFreshness, workerPools, globalCaps: () => listGlobalCaps(database.db), pauses: () => findPauses(database.db), registry });

    const { reliability } = config;
    const events: WorkerEvents = new EventEmitter();
    // Set once the runners exist. A pool declared dead has had its jobs released to other pools: it
    // ends at once and its runner restarts with a new pool.
    let abandonPool = (poolId: string): void => void poolId;
    const inFlight = new InFlightJobs();
    const heartbeats = new HeartbeatWriter(describeInstance(reliability.revision), {
      connectionString: database.url,
      intervalMs: reliability.heartbeatIntervalMs,
      rescueAfterMs: reliability.rescueAfterMs,
      stallLimitMs: reliability.eventLoopStallLimitMs,
      keepAliveIdleMs: config.database.timeouts.keepAliveIdleMs,
      connectTimeoutMs: config.database.timeouts.connectTimeoutMs,
      logger,
      onDeclaredDead: (poolId) => abandonPool(poolId),
      // Only the main runner batches its fetches: its locks may be jobs it has not started.
      runningJobs: (poolId, runner) => (runner === MAIN_RUNNER && config.worker.localQueueSize > 0 ? inFlight.unfinished(poolId).keys() : null),
    });
    releasers.push(() => heartbeats.close());
    const signals = new ReadinessSignals(events, {
      cronItems: crontab.length,
      heartbeatIntervalMs: reliability.heartbeatIntervalMs,
      heartbeats,
    });
    // Recorded with each pool's heartbeat: `observing-jobs add` checks that a running instance knows its task.
    // Read before any runner fetches, so a pause survives restarts and deploys; LISTEN on a connection of its own.
    const pauseListener = database.derive({ max: 1, applicationName: "observing-jobs pauses", statementTimeoutMs: null });
    releasers.push(() => pauseListener.close());
    const pauses = new PauseWatcher({ db: database.db, listenPool: pauseListener.pool, logger, events });
    await pauses.start();
    releasers.push(() => pauses.stop());
    const tasksOfRunner = new Map(planRunners(registry, config.worker.concurrency).map((plan) => [plan.name, plan.tasks.map((task) => task.name)]));
    const worker = await startWorker({
      pool: database.pool,
      openRunnerPool: (applicationName, max) => database.derive({ max, applicationName }),
      deps,
      observers: [metrics],
      cronItems: crontab.map((entry) => entry.item),
      concurrency: config.worker.concurrency,
      localQueueSize: config.worker.localQueueSize,
      pollIntervalMs: config.worker.pollIntervalMs,
      events,
      pauses,
      reliability: {
        inFlight,
        poolStarted: (poolId, runner, session) => heartbeats.register(poolId, runner, tasksOfRunner.get(runner) ?? [], session),
        leaseHolds: (poolId) => heartbeats.leaseHolds(poolId),
        poolEnded: (poolId, cause) => settleEndedPool({ db: database.db, heartbeats, inFlight, logger }, poolId, cause),
        shutdownAbortAfterMs: reliability.shutdownAbortAfterMs,
        shutdownTimeoutMs: reliability.shutdownTimeoutMs,
      },
    });
    abandonPool = (poolId) => void worker.abandonPool(poolId, "declared dead by the sweeper: its heartbeat was too old");
    releasers.push(() => worker.stop());

    const sweeper = new Sweeper(database.db, {
      intervalMs: reliability.sweepIntervalMs,
      rescueAfterMs: reliability.rescueAfterMs,
      logger,
      heartbeats,
      onRescued: (count) => metrics.rescued.inc(count),
    });
    sweeper.start();
    releasers.push(() => sweeper.stop());

    const app = await buildApp({
      config,
      logger,
      pool: database.pool,
      db: database.db,
      registry,
      crontab,
      queueStats,
      cronFreshness,
      metrics,
      worker,
      dashboardSources: {
        workerPools: async () =>
          (await workerPools()).map((pool) => ({ id: pool.pool_id, instance: pool.instance_id, runner: pool.runner, lastSeen: pool.last_seen, status: pool.status })),
      },
      reliability: { shuttingDown: () => signals.shuttingDown(), checks: () => signals.checks(worker) },
      pauses,
    });
    releasers.push(() => app.close());
    const url = await app.listen({ host: config.http.host, port: config.http.port });
    logger.info(
      { url, tasks: registry.names(), cron: crontab.map((entry) => entry.item.identifier), concurrency: config.worker.concurrency, instance: heartbeats.identity },
      "observing-jobs is running",
    );
    if (!config.auth.disabled && config.auth.tokens.length === 0 && !config.auth.oidc) {
      // Only outside production: there, config refuses to start without credentials.
      logger.warn(
        `no API credentials are configured, so every API call answers 401 and the dashboard cannot sign in: ` +
          `set API_TOKENS to a token of at least 16 characters (e.g. API_TOKENS=local-dev-token-0123456789 npm start) ` +
          `and sign in with it, or try the offline demo (npm run demo)`,
      );
    }

    let stopping: Promise<void> | undefined;
    const stop = async () => {
      signals.beginShutdown();
      await worker.stop();
      await releaseAll();
    };
    const releaseMemory = async () => {
      // Start-up's allocations end when /readyz first could say ready (the runners listen, cron is
      // starting or running, a beat is written); earlier, the collection would leave the rest of them behind.
      const deadline = performance.now() + STARTUP_SETTLES_WITHIN_MS;
      while (!stopping && performance.now() < deadline && !Object.values(signals.checks(worker)).every((check) => check.ok)) {
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      if (stopping) return null;
      const main = releaseStartupMemory();
      const heartbeatThread = await heartbeats.releaseStartupMemory();
      // The heartbeat thread answers null when it was closed meanwhile: that is stopping, not a miss.
      return stopping ? null : { main, heartbeatThread };
    };
    return { url, app, worker, database, registry, heartbeats, sweeper, releaseStartupMemory: releaseMemory, stop: () => (stopping ??= stop()) };
  } catch (error) {
    await releaseAll();
    throw error;
  }
}
