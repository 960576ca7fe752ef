/**
 * The Graphile Worker runners, embedded in the service process (library mode). Task lists come
 * from the registry, the schedule from the validated crontab; signals are the service's to handle.
 *
 * graphile-worker only has a process-wide concurrency limit, so tasks that declare a concurrency
 * cap get a runner of their own (one per cap group) whose concurrency is that cap; every other task
 * shares the main runner. A runner only fetches jobs of the tasks in its list, so the caps hold in
 * each instance. A global cap's runner also takes one of the group's slots in the database with
 * every job it fetches (migration 0018_global_caps), so the cap holds across instances.
 * Each extra runner costs one more LISTEN connection plus up to its cap in busy connections.
 *
 * Each runner is supervised (restarted with backoff if it ends on its own) and, with the service's
 * reliability wiring, registers a heartbeat before fetching and returns its unfinished jobs when it
 * ends (src/reliability/). With `openRunnerPool`, every runner start gets a connection pool of its
 * own whose session name the fencing triggers recognise (src/worker/job-control.ts).
 *
 * What an attempt's end means for its job is decided here, before graphile-worker records it:
 * - success, unless the pool may have been declared dead meanwhile and no longer holds the job:
 *   then the attempt is abandoned (its outcome discarded; graphile-worker's completion would be
 *   refused by the fence anyway);
 * - an upstream's back-off (Retry-After): the job is deferred until then, the attempt given back;
 * - a failure no retry can fix: the job dies now, its remaining attempts unspent;
 * - any other failure: graphile-worker's retry with backoff.
 */
import { EventEmitter } from "node:events";
import { trace } from "../observability/otel-api.ts";
import { run, type JobHelpers, type ParsedCronItem, type TaskList, type WorkerEvents } from "graphile-worker";
import type pg from "pg";
import { splitJobMetadata } from "../job-metadata.ts";
import { AttemptHistory } from "../lifecycle/history.ts";
import { keepResult } from "../lifecycle/results.ts";
import { makeWorkerLogger } from "../observability/logger.ts";
import { traceJobAttempt } from "../observability/tracing.ts";
import { MAIN_RUNNER, type RegisteredTask, type TaskRegistry } from "../registry.ts";
import { sanitizeError } from "../storable-text.ts";
import type { AttemptObserver, JobSnapshot } from "./attempt.ts";
import { AttemptAbandonedError, executeTask, runExhaustedHook, TaskInterruptedError, type TaskDependencies } from "./execute.ts";
import type { InFlightJobs } from "./in-flight-jobs.ts";
import { deferJob, failPermanently, holdsJob, makeRunnerSessionName, type HeldJob } from "./job-control.ts";
import { isPermanentFailure, requestedBackoffMs } from "./outcomes.ts";
import type { PauseWatcher, RunnerPauseGate } from "./pause-gate.ts";
import { refetchAfterJobEnds } from "./global-cap-refetch.ts";
import { guardLocalQueueReturn, SupervisedRunner, type PoolEndCause } from "./supervisor.ts";

/** What the reliability wiring adds to every attempt. */
export interface AttemptGuards {
  inFlight: InFlightJobs;
  /** The pool's lease holds: it cannot have been declared dead since its last beat (src/reliability/heartbeat.ts). */
  leaseHolds(poolId: string): boolean;
  /** Fires when the pool is abandoned (declared dead), with an AttemptAbandonedError as its reason. */
  abandonSignal(poolId: string): AbortSignal;
}

/** A connection pool of one runner start, with the session name its connections carry. */
export interface RunnerPool {
  pool: pg.Pool;
  close(): Promise<void>;
}

export interface WorkerOptions {
  /** graphile-worker's connections, unless `openRunnerPool` gives each runner start its own. */
  pool: pg.Pool;
  /** A pool of `max` connections named `applicationName`, for one runner start; closed when that runner ends. */
  openRunnerPool?: (applicationName: string, max: number) => RunnerPool;
  deps: TaskDependencies;
  observers: AttemptObserver[];
  cronItems: ParsedCronItem[];
  concurrency: number;
  /** The main runner's graphile-worker `localQueue.size`; 0 (or unset) leaves it off. */
  localQueueSize?: number;
  pollIntervalMs: number;
  /** The emitter every runner reports to; subscribe before starting to miss nothing. @defaultValue a new one */
  events?: WorkerEvents;
  /** Heartbeats, returning unfinished jobs and shutdown deadlines; without it pools only restart. */
  reliability?: RunnerReliability;
  /** Pauses every runner honours (src/worker/pause-gate.ts); started before the runners. */
  pauses?: PauseWatcher;
}

/** What src/reliability/ plugs into every runner. */
export interface RunnerReliability {
  inFlight: InFlightJobs;
  /** Before a pool's workers fetch their first job; `session` is its connections' name, when it has its own pool. */
  poolStarted(poolId: string, runner: string, session: string | null): Promise<void>;
  /** After a pool has ended, before its runner is restarted. */
  poolEnded(poolId: string, cause: PoolEndCause): Promise<void>;
  /** See AttemptGuards. */
  leaseHolds(poolId: string): boolean;
  /** From `stop()`: running jobs' abort signal fires after this long. */
  shutdownAbortAfterMs: number;
  /** From `stop()`: pools still running are shut down forcefully after this long. */
  shutdownTimeoutMs: number;
}

export interface WorkerHandle {
  runners: SupervisedRunner[];
  /** One emitter for every runner's events (observability subscribes here). */
  events: WorkerEvents;
  /** True while every runner is up (false while one restarts, and once stopping). */
  isRunning(): boolean;
  /** Stops fetching jobs, lets running jobs finish until the shutdown deadlines, then resolves. */
  stop(): Promise<void>;
  /**
   * Ends the pool with this id at once (declared dead): its running attempts are aborted and
   * abandoned, and its runner restarts with a new pool.
   */
  abandonPool(poolId: string, reason: string): Promise<void>;
}

/** A runner to start: the tasks it fetches and how many it runs at once. */
export interface RunnerPlan {
  name: string;
  concurrency: number;
  /** Its cap holds across instances: every fetch takes a slot of the group in the database. */
  globalCap: boolean;
  tasks: RegisteredTask[];
}

/** The main runner for uncapped tasks, plus one per concurrency-cap group. */
export function planRunners(registry: TaskRegistry, concurrency: number): RunnerPlan[] {
  const main: RunnerPlan = { name: MAIN_RUNNER, concurrency, globalCap: false, tasks: [] };
  const capped = new Map<string, RunnerPlan>();
  for (const task of registry.all()) {
    const cap = task.defaults.concurrency;
    if (!cap) {
      main.tasks.push(task);
      continue;
    }
    const plan = capped.get(cap.group) ?? { name: cap.group, concurrency: cap.limit, globalCap: cap.scope === "global", tasks: [] };
    plan.tasks.push(task);
    capped.set(cap.group, plan);
  }
  return [main, ...capped.values()];
}

/** Connections the runners may hold at once: every job slot plus one LISTEN client per runner. */
export function connectionsNeeded(plans: RunnerPlan[]): number {
  return plans.reduce((sum, plan) => sum + plan.concurrency + 1, 0);
}

/** Connections one runner start's own pool holds at most: a fetch per worker, LISTEN, the completion and failure batchers (and cron). */
export function runnerPoolSize(plan: Pick<RunnerPlan, "concurrency">): number {
  return plan.concurrency + 2;
}

export function makeTaskList(tasks: RegisteredTask[], deps: TaskDependencies, observers: AttemptObserver[], guards?: AttemptGuards, pauses?: RunnerPauseGate): TaskList {
  const history = new AttemptHistory(deps.db, deps.logger);
  const taskList: TaskList = {};
  for (const task of tasks) {
    taskList[task.name] = async (payload, helpers) => {
      const job = await snapshot(task, helpers);
      const info = { id: job.id, attempt: job.attempt, maxAttempts: job.maxAttempts, queueName: job.queue };
      const poolId = helpers.job.locked_by ?? "";
      const held: HeldJob = { id: job.id, poolId };
      // A job fetched before a pause reached this instance goes back to the queue unstarted.
      const paused = await pauses?.holdIfPaused(task, job, held, deps.db, deps.logger, observers);
      if (paused) throw paused;
      const { traceCarrier } = splitJobMetadata(payload);
      await traceJobAttempt({ ...info, task: task.name, queue: job.queue }, traceCarrier, async (span) => {
        const context = span.spanContext();
        if (trace.isSpanContextValid(context)) job.traceId = context.traceId;
        guards?.inFlight.began(poolId, job.id, job.runAt);
        for (const observer of observers) observer.started(job, helpers.job.payload, helpers.job.locked_by);
        const started = performance.now();
        const stopSignals = guards ? [helpers.abortSignal, guards.abandonSignal(poolId)] : [helpers.abortSignal];
        try {
          // A job fetched into the local queue before this pool was declared dead may since run
          // elsewhere (the sweeper gave it back): a pool whose lease lapsed asks before starting it.
          if (guards && !guards.leaseHolds(poolId) && !(await stillHeld(deps, held, false))) throw new AttemptAbandonedError(poolId, "it no longer holds the job, so it did not start it");
          const returned = await executeTask(task, payload, info, deps, stopSignals);
          // The fence of a stale success. While the lease holds (always, unless the process was
          // frozen or cut off from the database for most of the rescue threshold) nothing is asked.
          if (guards && !guards.leaseHolds(poolId) && !(await stillHeld(deps, held))) throw new AttemptAbandonedError(poolId, "it no longer holds the job");
          // Just before graphile-worker's completion, only when the handler returned something, fenced by the lock (src/lifecycle/results.ts).
          await keepResult(deps.db, deps.logger, { jobId: job.id, poolId, attempt: job.attempt }, returned, task.sensitive);
          guards?.inFlight.finished(poolId, job.id);
          for (const observer of observers) observer.succeeded(job, performance.now() - started);
        } catch (error) {
          // A NUL or a lone surrogate in the message would make graphile-worker's failJob statement
          // fail, which ends the whole pool (and the job would keep no error): clean it first.
          const failure = sanitizeError(error);
          // Not the job's failure: once this pool has ended, the job goes back to the queue with its
          // attempt given back and a `rescued` event (src/reliability/pool-settlement.ts).
          if (failure instanceof TaskInterruptedError && guards) throw failure;
          const durationMs = () => performance.now() - started;
          if (failure instanceof AttemptAbandonedError) {
            guards?.inFlight.finished(poolId, job.id);
            // graphile-worker's failure statement that follows is fenced by locked_by: it changes nothing.
            await history.abandoned(job, failure.message, durationMs(), helpers.job.locked_by);
            for (const observer of observers) observer.abandoned(job, failure.message, durationMs());
            throw failure;
          }
          const backoffMs = requestedBackoffMs(failure);
          if (backoffMs !== undefined) {
            const runAt = new Date(Date.now() + backoffMs);
            if (await control(deps, () => deferJob(deps.db, held, runAt, `deferred until ${runAt.toISOString()} (the upstream asked to wait): ${failure.message}`))) {
              deps.logger.warn({ jobId: job.id, task: task.name, runAt, err: failure }, "job deferred: the upstream asked to wait; this attempt does not count");
              await history.deferred(job, failure, runAt, durationMs());
              guards?.inFlight.finished(poolId, job.id);
              for (const observer of observers) observer.deferred(job, failure, durationMs());
              throw failure;
            }
          }
          let permanent = false;
          if (job.attempt < job.maxAttempts && isPermanentFailure(failure)) {
            permanent = await control(deps, () => failPermanently(deps.db, held, failure.message));
            if (permanent) deps.logger.warn({ jobId: job.id, task: task.name, err: failure }, "job failed permanently: no retry can succeed; its remaining attempts are not spent");
          }
          // The attempt ended here; the hook below is not part of it.
          const endedAt = new Date();
          const attemptMs = durationMs();
          const last = permanent || (await history.isLastAttempt(job));
          if (last) {
            // The job is dead after this attempt: run the task's hook once, before the failure is recorded.
            try {
              await runExhaustedHook(task, payload, permanent ? { ...info, maxAttempts: job.attempt } : info, failure, deps);
            } catch (hookError) {
              deps.logger.error({ err: hookError, jobId: job.id, task: task.name }, "onExhausted hook failed");
              await history.hookFailed(job, hookError);
            }
          }
          await history.failed(job, failure, attemptMs, last, endedAt);
          // Running until here: its heartbeat lists it while the hook runs, so a crash meanwhile counts the attempt.
          guards?.inFlight.finished(poolId, job.id);
          // Observers tell a dead job by attempt >= maxAttempts: give them graphile-worker's verdict.
          const judged = last ? { ...job, maxAttempts: job.attempt } : { ...job, maxAttempts: Math.max(job.maxAttempts, job.attempt + 1) };
          for (const observer of observers) observer.failed(judged, failure, attemptMs);
          throw failure;
        }
      });
    };
  }
  return taskList;
}

/**
 * Whether the pool still holds the job. When the database cannot say: after the attempt, yes (the
 * completion's own fence decides); before it, no (not starting is the safe side).
 */
async function stillHeld(deps: TaskDependencies, job: HeldJob, whenUnknown = true): Promise<boolean> {
  try {
    return await holdsJob(deps.db, job);
  } catch (error) {
    deps.logger.warn({ err: error, jobId: job.id }, "could not check whether this pool still holds the job; its completion is fenced in the database");
    return whenUnknown;
  }
}

/** Runs a job-control statement; a failure of its own leaves graphile-worker's ordinary failure path to record the attempt. */
async function control(deps: TaskDependencies, statement: () => Promise<boolean>): Promise<boolean> {
  try {
    return await statement();
  } catch (error) {
    deps.logger.warn({ err: error }, "could not change the job's outcome; recording the attempt as an ordinary failure");
    return false;
  }
}

async function snapshot(task: RegisteredTask, helpers: JobHelpers): Promise<JobSnapshot> {
  const { job } = helpers;
  return {
    id: job.id,
    task: task.name,
    queue: await helpers.getQueueName(job.job_queue_id),
    attempt: job.attempts,
    maxAttempts: job.max_attempts,
    runAt: job.run_at,
    createdAt: job.created_at,
    priority: job.priority,
    key: job.key,
    traceId: null,
  };
}

export async function startWorker(options: WorkerOptions): Promise<WorkerHandle> {
  const { deps, reliability } = options;
  const events: WorkerEvents = options.events ?? new EventEmitter();
  const plans = planRunners(deps.registry, options.concurrency);
  if (options.localQueueSize) guardLocalQueueReturn(deps.logger);
  const runners: SupervisedRunner[] = [];
  const globalCapRunners = new Set<SupervisedRunner>();
  refetchAfterJobEnds(events, (poolId) => [...globalCapRunners].some((runner) => runner.poolId() === poolId));
  const stopAll = () => Promise.all(runners.map((runner) => runner.stop()));
  // Per pool: aborted when the pool is abandoned, which ends its running attempts at once.
  const abandonment = new Map<string, AbortController>();
  const abandonController = (poolId: string) => {
    let controller = abandonment.get(poolId);
    if (!controller) abandonment.set(poolId, (controller = new AbortController()));
    return controller;
  };
  const guards: AttemptGuards | undefined = reliability && {
    inFlight: reliability.inFlight,
    leaseHolds: (poolId) => reliability.leaseHolds(poolId),
    abandonSignal: (poolId) => abandonController(poolId).signal,
  };
  try {
    for (const [index, plan] of plans.entries()) {
      if (plan.tasks.length === 0 && index > 0) continue;
      const pauses = options.pauses?.gate(plan.name, plan.tasks);
      const taskList = makeTaskList(plan.tasks, deps, options.observers, guards, pauses);
      let session: string | null = null;
      const runner = new SupervisedRunner({
        name: plan.name,
        logger: deps.logger,
        events,
        poolStarted: reliability ? (poolId, name) => reliability.poolStarted(poolId, name, session) : async () => {},
        poolEnded: async (poolId, cause) => {
          const abandoned = abandonment.get(poolId)?.signal.aborted ?? false;
          abandonment.delete(poolId);
          await reliability?.poolEnded(poolId, abandoned && cause === "restart" ? "abandoned" : cause);
        },
        startRunner: async (plugin) => {
          const own = options.openRunnerPool ? options.openRunnerPool((session = makeRunnerSessionName(plan.globalCap)), runnerPoolSize(plan)) : null;
          try {
            const started = await run({
              pgPool: own?.pool ?? options.pool,
              taskList,
              // Cron only schedules jobs (any runner with the task works them); one scheduler per process.
              parsedCronItems: index === 0 ? options.cronItems : [],
              noHandleSignals: true,
              ...(pauses ? { forbiddenFlags: pauses.forbiddenFlags } : {}),
              events,
              logger: makeWorkerLogger(deps.logger.child({ runner: plan.name })),
              preset: {
                plugins: [plugin],
                worker: {
                  concurrentJobs: plan.concurrency,
                  pollInterval: options.pollIntervalMs,
                  // Completions and failures go through graphile-worker's batchers, which a graceful shutdown
                  // flushes before it resolves; unbatched, they are fire-and-forget and a job that finished
                  // just before shutdown could be left locked. A delay of 0 adds no latency.
                  completeJobBatchDelay: 0,
                  failJobBatchDelay: 0,
                  ...(reliability ? { gracefulShutdownAbortTimeout: reliability.shutdownAbortAfterMs } : {}),
                  // Only the main runner batches its fetches: a capped runner works slow, rate-limited jobs,
                  // and a batch locked by one instance would wait there while other instances sit idle.
                  ...(index === 0 && options.localQueueSize ? { localQueue: { size: options.localQueueSize } } : {}),
                },
              },
            });
            // The runner's own connections end with it (its settlement uses the service's pool).
            if (own) void started.promise.then(own.close, own.close).catch(() => {});
            return started;
          } catch (error) {
            await own?.close();
            throw error;
          }
        },
      });
      runners.push(runner);
      if (plan.globalCap) globalCapRunners.add(runner);
    }
    // Started side by side: each opens its own connections and checks graphile-worker's schema.
    const started = await Promise.allSettled(runners.map((runner) => runner.start()));
    const failed = started.find((result) => result.status === "rejected");
    if (failed) throw failed.reason;
  } catch (error) {
    await stopAll();
    throw error;
  }
  let stopping: Promise<void> | undefined;
  const stop = async () => {
    // The hard deadline: whatever still runs is failed back to the queue so the process can exit.
    const deadline = reliability
      ? setTimeout(() => {
          for (const runner of runners) void runner.forceStop("the instance is shutting down and its deadline has passed");
        }, reliability.shutdownTimeoutMs)
      : undefined;
    try {
      await stopAll();
    } finally {
      clearTimeout(deadline);
    }
  };
  return {
    runners,
    events,
    isRunning: () => runners.every((runner) => runner.isUp()),
    stop: () => (stopping ??= stop()),
    async abandonPool(poolId, reason) {
      // First the attempts (their outcomes are discarded), then the pool itself.
      abandonController(poolId).abort(new AttemptAbandonedError(poolId));
      await runners.find((runner) => runner.poolId() === poolId)?.forceStop(reason);
    },
  };
}
