/**
 * The Graphile Worker runner, embedded in the service process (library mode): the task list comes
 * from the registry, the schedule from the validated crontab, signals are the service's to handle.
 */
import { run, type Job, type ParsedCronItem, type Runner, type TaskList } from "graphile-worker";
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

export function makeTaskList(deps: TaskDependencies, pool: pg.Pool): TaskList {
  const queueName = makeQueueNameLookup(pool);
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
          queueName: await queueName(helpers.job),
        },
        deps,
        helpers.abortSignal,
      );
  }
  return taskList;
}

/**
 * Handlers get the job's queue id, not its name. Queue ids never change, so each name is read once
 * per process from graphile-worker's public `jobs` view, keeping the lookup off the per-job path.
 */
function makeQueueNameLookup(pool: pg.Pool): (job: Job) => Promise<string | null> {
  const names = new Map<number, Promise<string | null>>();
  return (job) => {
    if (job.job_queue_id === null) return Promise.resolve(null);
    let name = names.get(job.job_queue_id);
    if (!name) {
      name = pool
        .query<{ queue_name: string | null }>("select queue_name from graphile_worker.jobs where id = $1", [job.id])
        .then((result) => result.rows[0]?.queue_name ?? null);
      name.catch(() => names.delete(job.job_queue_id!));
      names.set(job.job_queue_id, name);
    }
    return name;
  };
}

export async function startWorker(options: WorkerOptions): Promise<WorkerHandle> {
  const { deps } = options;
  const runner = await run({
    pgPool: options.pool,
    taskList: makeTaskList(deps, options.pool),
    parsedCronItems: options.cronItems,
    concurrency: options.concurrency,
    pollInterval: options.pollIntervalMs,
    noHandleSignals: true,
    logger: makeWorkerLogger(deps.logger),
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
