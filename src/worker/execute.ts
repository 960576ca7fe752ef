/**
 * Runs one attempt of a task: validates the payload, builds the handler's context, and enforces
 * the attempt's time limit; returns what the handler returned (the job's result, if any). Used by the queue (through graphile-worker) and by `observing-jobs run`.
 */
import type { Config } from "../config.ts";
import type { Db } from "../db/database.ts";
import { checkPayload, makeEnqueue } from "../enqueue.ts";
import type { Logger } from "../observability/logger.ts";
import type { RegisteredTask, TaskRegistry } from "../registry.ts";
import type { JobInfo, TaskContext, TaskResult } from "../task.ts";
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

/** The attempt was stopped because the process is shutting down; the job itself did nothing wrong. */
export class TaskInterruptedError extends Error {
  override name = "TaskInterruptedError";
  constructor(task: string) {
    super(`task '${task}' was interrupted: the instance is shutting down`);
  }
}

/**
 * The attempt was stopped because its worker pool was declared dead: the job was released to
 * other pools, and whatever this attempt still does is discarded (its outcome changes nothing).
 */
export class AttemptAbandonedError extends Error {
  override name = "AttemptAbandonedError";
  constructor(poolId: string, detail = "its heartbeat was too old") {
    super(`attempt abandoned: worker pool ${poolId} was declared dead (${detail}); the job was released to other pools and this attempt's outcome is discarded`);
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
): Promise<TaskResult> {
  const { timeoutMs } = task.defaults;
  const timeout = AbortSignal.timeout(timeoutMs);
  const { value, context } = prepare(task, rawPayload, job, deps, AbortSignal.any([stopSignal, timeout]));

  // A handler that ignores its signal still loses these races, so the attempt ends on time: at its
  // time limit, when shutdown aborts it (and the worker can hand the job back before the kill), or
  // when its pool is abandoned.
  const stopped = () => (stopSignal.reason instanceof AttemptAbandonedError ? stopSignal.reason : new TaskInterruptedError(task.name));
  const timedOut = rejectOnAbort(timeout, () => new TaskTimeoutError(task.name, timeoutMs));
  const interrupted = rejectOnAbort(stopSignal, stopped);
  try {
    return await Promise.race([task.run(value, context), timedOut.rejected, interrupted.rejected]);
  } catch (error) {
    // Whatever the handler threw on its way out (an aborted fetch, say), the cause was the abort.
    if (stopSignal.aborted) throw stopped();
    if (timeout.aborted) throw new TaskTimeoutError(task.name, timeoutMs);
    throw error;
  } finally {
    timedOut.dispose();
    interrupted.dispose();
  }
}

/**
 * A promise that rejects when the signal aborts, and the way to stop listening: the stop signal is
 * the worker pool's and lives as long as the pool, so every attempt must remove its listener.
 */
function rejectOnAbort(signal: AbortSignal, makeError: () => Error): { rejected: Promise<never>; dispose(): void } {
  let onAbort = () => {};
  const rejected = new Promise<never>((_, reject) => {
    onAbort = () => reject(makeError());
    if (signal.aborted) onAbort();
    else signal.addEventListener("abort", onAbort, { once: true });
  });
  rejected.catch(() => {}); // observed only through the race
  return { rejected, dispose: () => signal.removeEventListener("abort", onAbort) };
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
