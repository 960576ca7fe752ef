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
  let logger: Logger | undefined;
  const context: TaskContext = {
    db: deps.db,
    // Made on first use: many attempts log nothing, and a pino child serializes its bindings when made.
    get logger() {
      return (logger ??= deps.logger.child({ jobId: info.id, task: task.name, attempt: info.attempt, queue: info.queueName }));
    },
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
  stopSignals: readonly AbortSignal[],
): Promise<TaskResult> {
  const { timeoutMs } = task.defaults;
  const attempt = new AttemptSignal(stopSignals, timeoutMs);
  let prepared: ReturnType<typeof prepare>;
  try {
    prepared = prepare(task, rawPayload, job, deps, attempt.signal);
  } catch (error) {
    attempt.dispose(); // a payload that fails its schema fails as such, stopped or not
    throw error;
  }
  const stopped = (reason: unknown) => (reason instanceof AttemptAbandonedError ? reason : new TaskInterruptedError(task.name));
  try {
    // A handler that ignores its signal still loses this race, so the attempt ends on time: at its
    // time limit, when shutdown aborts it (and the worker can hand the job back before the kill), or
    // when its pool is abandoned.
    const ended = new Promise<never>((_, reject) => {
      const end = () => reject(attempt.stopped ? stopped(attempt.stopped.reason) : new TaskTimeoutError(task.name, timeoutMs));
      attempt.whenAborted(end);
    });
    ended.catch(() => {}); // observed only through the race
    return await Promise.race([task.run(prepared.value, prepared.context), ended]);
  } catch (error) {
    // Whatever the handler threw on its way out (an aborted fetch, say), the cause was the abort.
    if (attempt.stopped) throw stopped(attempt.stopped.reason);
    if (attempt.signal.aborted) throw new TaskTimeoutError(task.name, timeoutMs);
    throw error;
  } finally {
    attempt.dispose();
  }
}

/** The reason of an attempt's signal once the attempt has ended (one instance: every attempt ends). */
const ATTEMPT_ENDED = new DOMException("the attempt has ended", "AbortError");

/**
 * An attempt's signal: aborted by the first of its stop signals that aborts (shutdown, its pool
 * abandoned), with that signal's reason, or at its time limit with a TimeoutError, as
 * AbortSignal.timeout's. One controller, one timer and one listener per stop signal, all removed
 * when the attempt ends. AbortSignal.any and AbortSignal.timeout, which did this before, took ~9%
 * of the service's CPU in a drain and added to its garbage collection (each composite signal is
 * registered, weakly, with every long-lived pool signal it follows; docs/BENCHMARKS.md, "Per-job CPU").
 */
class AttemptSignal {
  readonly #controller = new AbortController();
  readonly #sources: readonly AbortSignal[];
  readonly #timer: NodeJS.Timeout;
  #whenAborted: (() => void) | undefined;
  /** The stop signal that ended the attempt, if one did. */
  stopped: AbortSignal | undefined;

  constructor(sources: readonly AbortSignal[], timeoutMs: number) {
    this.#sources = sources;
    // Unreferenced, as AbortSignal.timeout's: a time limit alone keeps no process alive.
    this.#timer = setTimeout(() => this.#controller.abort(new DOMException("The operation was aborted due to timeout", "TimeoutError")), timeoutMs).unref();
    for (const source of sources) {
      if (source.aborted) {
        this.#stop(source);
        break;
      }
      source.addEventListener("abort", this.#onStop, { once: true });
    }
  }

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  /** Calls `listener` when the signal aborts before the attempt ends (at once if it has: stopped before it began). */
  whenAborted(listener: () => void): void {
    if (this.signal.aborted) return listener();
    this.#whenAborted = listener;
    this.signal.addEventListener("abort", listener, { once: true });
  }

  /**
   * Removes the timer and the listeners (the stop signals are the pool's and outlive every
   * attempt), and aborts the attempt's signal, so that work its handler left running stops too.
   */
  dispose(): void {
    clearTimeout(this.#timer);
    for (const source of this.#sources) source.removeEventListener("abort", this.#onStop);
    if (this.#whenAborted) this.signal.removeEventListener("abort", this.#whenAborted);
    if (!this.signal.aborted) this.#controller.abort(ATTEMPT_ENDED);
  }

  readonly #onStop = (event: Event) => this.#stop(event.target as AbortSignal);

  #stop(source: AbortSignal): void {
    if (this.signal.aborted) return;
    this.stopped = source;
    this.#controller.abort(source.reason);
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
