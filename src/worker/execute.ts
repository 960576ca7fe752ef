/**
 * Runs one attempt of a task: validates the payload, builds the handler's context, and enforces
 * the attempt's time limit. Used by the queue (through graphile-worker) and by `observing-jobs run`.
 */
import type { Config } from "../config.ts";
import type { Db } from "../db/database.ts";
import { checkPayload, makeEnqueue } from "../enqueue.ts";
import type { Logger } from "../observability/logger.ts";
import type { RegisteredTask, TaskRegistry } from "../registry.ts";
import type { JobInfo, TaskContext } from "../task.ts";
import { splitJobMetadata } from "../job-metadata.ts";
import type { UpstreamClients } from "../upstream/clients.ts";

/** What every handler gets from the process it runs in. */
export interface TaskDependencies {
  db: Db;
  registry: TaskRegistry;
  upstream: UpstreamClients;
  logger: Logger;
  config: Config;
}

export class TaskTimeoutError extends Error {
  override name = "TaskTimeoutError";
  constructor(task: string, timeoutMs: number) {
    super(`task '${task}' timed out after ${timeoutMs} ms`);
  }
}

/** Validates the payload and builds the context a handler (or hook) runs with. */
function prepare(task: RegisteredTask, rawPayload: unknown, job: Omit<JobInfo, "cron" | "task">, deps: TaskDependencies, signal: AbortSignal) {
  const { payload, cron } = splitJobMetadata(rawPayload);
  const value = checkPayload(task, payload);
  const info: JobInfo = { ...job, task: task.name, ...(cron ? { cron } : {}) };
  const context: TaskContext = {
    db: deps.db,
    logger: deps.logger.child({ jobId: info.id, task: task.name, attempt: info.attempt, queue: info.queueName }),
    signal,
    job: info,
    upstream: deps.upstream,
    // Jobs this one enqueues record it as their parent (progress, cancellation); `run` from the CLI has no job row.
    enqueue: makeEnqueue(deps.db, deps.registry, { source: "task", ...(/^\d+$/.test(info.id) ? { parentId: info.id } : {}) }),
    config: deps.config,
  };
  return { value, context };
}

export async function executeTask(
  task: RegisteredTask,
  rawPayload: unknown,
  job: Omit<JobInfo, "cron" | "task">,
  deps: TaskDependencies,
  stopSignal: AbortSignal,
): Promise<void> {
  const { timeoutMs } = task.defaults;
  const timeout = AbortSignal.timeout(timeoutMs);
  const { value, context } = prepare(task, rawPayload, job, deps, AbortSignal.any([stopSignal, timeout]));

  const timedOut = new Promise<never>((_, reject) => {
    const onTimeout = () => reject(new TaskTimeoutError(task.name, timeoutMs));
    if (timeout.aborted) onTimeout();
    else timeout.addEventListener("abort", onTimeout, { once: true });
  });
  timedOut.catch(() => {}); // only observed through the race below
  // A handler that ignores its signal still loses the race at the time limit, so the attempt fails on time.
  try {
    await Promise.race([task.run(value, context), timedOut]);
  } catch (error) {
    // Whatever the handler threw on its way out (an aborted fetch, say), the cause was the time limit.
    if (timeout.aborted && !stopSignal.aborted) throw new TaskTimeoutError(task.name, timeoutMs);
    throw error;
  }
}

/** Runs the task's `onExhausted` hook for a job that has just used its last attempt. */
export async function runExhaustedHook(
  task: RegisteredTask,
  rawPayload: unknown,
  job: Omit<JobInfo, "cron" | "task">,
  error: Error,
  deps: TaskDependencies,
): Promise<void> {
  if (!task.onExhausted) return;
  const signal = AbortSignal.timeout(task.defaults.timeoutMs);
  const { value, context } = prepare(task, rawPayload, job, deps, signal);
  await task.onExhausted(value, { ...context, error });
}
