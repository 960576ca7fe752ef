/**
 * The Graphile Worker runner, embedded in the service process (library mode): the task list comes
 * from the registry, the schedule from the validated crontab, signals are the service's to handle.
 */
import { run, type ParsedCronItem, type Runner, type TaskList } from "graphile-worker";
import type pg from "pg";
import { makeWorkerLogger } from "../observability/logger.ts";
import { executeTask, type TaskDependencies } from "./execute.ts";

export interface WorkerOptions {
  pool: pg.Pool;
  deps: TaskDependencies;
  cronItems: ParsedCronItem[];
  concurrency: number;
  pollIntervalMs: number;
}

export interface WorkerHandle {
  runner: Runner;
  /** False once the runner has stopped, by request or by a fatal error. */
  isRunning(): boolean;
  /** Stops fetching jobs, lets running jobs finish (their abort signal fires), then resolves. */
  stop(): Promise<void>;
}

export function makeTaskList(deps: TaskDependencies): TaskList {
  const taskList: TaskList = {};
  for (const task of deps.registry.all()) {
    taskList[task.name] = async (payload, helpers) =>
      executeTask(
        task,
        payload,
        {
          id: helpers.job.id,
          attempt: helpers.job.attempts,
          maxAttempts: helpers.job.max_attempts,
          queueName: await helpers.getQueueName(helpers.job.job_queue_id),
        },
        deps,
        helpers.abortSignal,
      );
  }
  return taskList;
}

export async function startWorker(options: WorkerOptions): Promise<WorkerHandle> {
  const { deps } = options;
  const runner = await run({
    pgPool: options.pool,
    taskList: makeTaskList(deps),
    parsedCronItems: options.cronItems,
    noHandleSignals: true,
    logger: makeWorkerLogger(deps.logger),
    preset: {
      worker: {
        concurrentJobs: options.concurrency,
        pollInterval: options.pollIntervalMs,
        // Completions and failures go through graphile-worker's batchers, which a graceful shutdown
        // flushes before it resolves; unbatched, they are fire-and-forget and a job that finished
        // just before shutdown could be left locked. A delay of 0 adds no latency.
        completeJobBatchDelay: 0,
        failJobBatchDelay: 0,
      },
    },
  });
  let running = true;
  runner.promise.then(
    () => {
      running = false;
    },
    (error: unknown) => {
      running = false;
      deps.logger.error({ err: error }, "the job runner stopped with an error");
    },
  );
  return {
    runner,
    isRunning: () => running,
    async stop() {
      if (!running) return;
      await runner.stop();
    },
  };
}
