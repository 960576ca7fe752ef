/**
 * The Graphile Worker runners, embedded in the service process (library mode). Task lists come
 * from the registry, the schedule from the validated crontab; signals are the service's to handle.
 *
 * graphile-worker only has a process-wide concurrency limit, so tasks that declare a concurrency
 * cap get a runner of their own (one per cap group) whose concurrency is that cap; every other task
 * shares the main runner. A runner only fetches jobs of the tasks in its list, so the caps hold.
 * Each extra runner costs one more LISTEN connection plus up to its cap in busy connections.
 *
 * Each runner is supervised (restarted with backoff if it ends on its own) and, with the service's
 * reliability wiring, registers a heartbeat before fetching and returns its unfinished jobs when it
 * ends (src/reliability/).
 */
import { EventEmitter } from "node:events";
import { trace } from "@opentelemetry/api";
import { run, type JobHelpers, type ParsedCronItem, type TaskList, type WorkerEvents } from "graphile-worker";
import type pg from "pg";
import { splitJobMetadata } from "../job-metadata.ts";
import { AttemptHistory } from "../lifecycle/history.ts";
import { makeWorkerLogger } from "../observability/logger.ts";
import { traceJobAttempt } from "../observability/tracing.ts";
import type { RegisteredTask, TaskRegistry } from "../registry.ts";
import type { InFlightJobs } from "./in-flight-jobs.ts";
import { SupervisedRunner, type PoolEndCause } from "./supervisor.ts";
import type { AttemptObserver, JobSnapshot } from "./attempt.ts";
import { executeTask, runExhaustedHook, TaskInterruptedError, type TaskDependencies } from "./execute.ts";

export interface WorkerOptions {
  pool: pg.Pool;
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
}

/** What src/reliability/ plugs into every runner. */
export interface RunnerReliability {
  inFlight: InFlightJobs;
  /** Before a pool's workers fetch their first job. */
  poolStarted(poolId: string, runner: string): Promise<void>;
  /** After a pool has ended, before its runner is restarted. */
  poolEnded(poolId: string, cause: PoolEndCause): Promise<void>;
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
  /** Ends the pool with this id at once (declared dead); its runner restarts with a new pool. */
  abandonPool(poolId: string, reason: string): Promise<void>;
}

/** A runner to start: the tasks it fetches and how many it runs at once. */
export interface RunnerPlan {
  name: string;
  concurrency: number;
  tasks: RegisteredTask[];
}

/** The main runner for uncapped tasks, plus one per concurrency-cap group. */
export function planRunners(registry: TaskRegistry, concurrency: number): RunnerPlan[] {
  const main: RunnerPlan = { name: "main", concurrency, tasks: [] };
  const capped = new Map<string, RunnerPlan>();
  for (const task of registry.all()) {
    const cap = task.defaults.concurrency;
    if (!cap) {
      main.tasks.push(task);
      continue;
    }
    const plan = capped.get(cap.group) ?? { name: cap.group, concurrency: cap.limit, tasks: [] };
    plan.tasks.push(task);
    capped.set(cap.group, plan);
  }
  return [main, ...capped.values()];
}

/** Connections the runners may hold at once: every job slot plus one LISTEN client per runner. */
export function connectionsNeeded(plans: RunnerPlan[]): number {
  return plans.reduce((sum, plan) => sum + plan.concurrency + 1, 0);
}

export function makeTaskList(tasks: RegisteredTask[], deps: TaskDependencies, observers: AttemptObserver[], inFlight?: InFlightJobs): TaskList {
  const history = new AttemptHistory(deps.db, deps.logger);
  const taskList: TaskList = {};
  for (const task of tasks) {
    taskList[task.name] = async (payload, helpers) => {
      const job = await snapshot(task, helpers);
      const info = { id: job.id, attempt: job.attempt, maxAttempts: job.maxAttempts, queueName: job.queue };
      const poolId = helpers.job.locked_by ?? "";
      const { traceCarrier } = splitJobMetadata(payload);
      await traceJobAttempt({ ...info, task: task.name, queue: job.queue }, traceCarrier, async (span) => {
        const context = span.spanContext();
        if (trace.isSpanContextValid(context)) job.traceId = context.traceId;
        inFlight?.began(poolId, job.id, job.runAt);
        for (const observer of observers) observer.started(job, helpers.job.payload, helpers.job.locked_by);
        const started = performance.now();
        try {
          await executeTask(task, payload, info, deps, helpers.abortSignal);
          inFlight?.finished(poolId, job.id);
          for (const observer of observers) observer.succeeded(job, performance.now() - started);
        } catch (error) {
          const failure = error instanceof Error ? error : new Error(String(error));
          // Not the job's failure: once this pool has ended, the job goes back to the queue with its
          // attempt given back and a `rescued` event (src/reliability/shutdown.ts).
          if (failure instanceof TaskInterruptedError && inFlight) throw failure;
          inFlight?.finished(poolId, job.id);
          const durationMs = performance.now() - started;
          const endedAt = new Date();
          const last = await history.isLastAttempt(job);
          if (last) {
            // The job is dead after this attempt: run the task's hook once, before the failure is recorded.
            try {
              await runExhaustedHook(task, payload, info, failure, deps);
            } catch (hookError) {
              deps.logger.error({ err: hookError, jobId: job.id, task: task.name }, "onExhausted hook failed");
              await history.hookFailed(job, hookError);
            }
          }
          await history.failed(job, failure, durationMs, last, endedAt);
          // Observers tell a dead job by attempt >= maxAttempts: give them graphile-worker's verdict.
          const judged = last ? { ...job, attempt: Math.max(job.attempt, job.maxAttempts) } : { ...job, maxAttempts: Math.max(job.maxAttempts, job.attempt + 1) };
          for (const observer of observers) observer.failed(judged, failure, durationMs);
          throw failure;
        }
      });
    };
  }
  return taskList;
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
  const runners: SupervisedRunner[] = [];
  const stopAll = () => Promise.all(runners.map((runner) => runner.stop()));
  try {
    for (const [index, plan] of plans.entries()) {
      if (plan.tasks.length === 0 && index > 0) continue;
      const taskList = makeTaskList(plan.tasks, deps, options.observers, reliability?.inFlight);
      const runner = new SupervisedRunner({
        name: plan.name,
        logger: deps.logger,
        events,
        poolStarted: reliability ? (poolId, name) => reliability.poolStarted(poolId, name) : async () => {},
        poolEnded: reliability ? (poolId, cause) => reliability.poolEnded(poolId, cause) : async () => {},
        startRunner: (plugin) =>
          run({
            pgPool: options.pool,
            taskList,
            // Cron only schedules jobs (any runner with the task works them); one scheduler per process.
            parsedCronItems: index === 0 ? options.cronItems : [],
            noHandleSignals: true,
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
          }),
      });
      await runner.start();
      runners.push(runner);
    }
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
      await runners.find((runner) => runner.poolId() === poolId)?.forceStop(reason);
    },
  };
}
