/**
 * The contract of a task file in tasks/: a payload schema, per-task defaults and a handler.
 * The file name is the task's identifier (snake_case verb_object).
 */
import type { Static, TSchema } from "typebox";
import type { Config } from "./config.ts";
import type { Db } from "./db/database.ts";
import type { Logger } from "./observability/logger.ts";
import type { UpstreamClients } from "./upstream/clients.ts";

/** Throw to fail a job for good (no retry can help); see src/permanent-failure.ts. */
export { PermanentJobError } from "./permanent-failure.ts";

/** Defaults for every job of a task; each is overridable when a job is enqueued. */
export interface TaskDefaults<P> {
  /** Attempts before the job is dead (kept as a dead-letter). @defaultValue 5 */
  maxAttempts?: number;
  /** Named queue: jobs in one queue run one at a time, in order. @defaultValue none (parallel) */
  queueName?: string;
  /** Lower runs first. @defaultValue 0 */
  priority?: number;
  /** Job key derived from the payload, so equal work is not queued twice. @defaultValue none */
  jobKey?: (payload: P) => string | undefined;
  /** What a second job with the same key does to a pending one. @defaultValue "replace" */
  jobKeyMode?: JobKeyMode;
  /** Time limit of one attempt: the abort signal fires and the attempt fails with a timeout error. @defaultValue 60000 */
  timeoutMs?: number;
  /**
   * At most `limit` jobs of this task run at once. Tasks naming the same `group` share one cap
   * (e.g. everything that calls GBIF). A `global` cap (the default) holds across every instance of
   * the service, through the database; an `instance` cap holds in each instance on its own.
   * @defaultValue none: the instance-wide limit only
   */
  concurrency?: { limit: number; group?: string; scope?: CapScope };
}

/** Where a concurrency cap holds: across all instances (enforced in the database) or in each one. */
export type CapScope = "global" | "instance";

export type JobKeyMode = "replace" | "preserve_run_at" | "unsafe_dedupe";

/** Per-enqueue overrides of a task's defaults. */
export interface EnqueueOptions {
  runAt?: Date;
  priority?: number;
  maxAttempts?: number;
  /** `null` runs the job outside any named queue even when the task has a default queue. */
  queueName?: string | null;
  jobKey?: string | null;
  jobKeyMode?: JobKeyMode;
}

/** A job as enqueued (src/enqueue.ts). */
export interface EnqueuedJob {
  id: string;
  task: string;
  queueName: string | null;
  runAt: Date;
  priority: number;
  maxAttempts: number;
  jobKey: string | null;
}

export type EnqueueFunction = (task: string, payload: unknown, options?: EnqueueOptions) => Promise<EnqueuedJob>;

/** What a running job knows about itself. */
export interface JobInfo {
  id: string;
  task: string;
  /** 1 on the first attempt. */
  attempt: number;
  maxAttempts: number;
  queueName: string | null;
  /** Set when the crontab fired this job. */
  cron?: { ts: string; backfilled: boolean };
}

/** Everything a handler may use. Tasks never read process.env or open their own connections. */
export interface TaskContext {
  db: Db;
  /** Bound to the job: every line carries its id, task and attempt. */
  readonly logger: Logger;
  /**
   * Fires on shutdown, at the attempt's time limit, when its pool is abandoned, and when the attempt
   * has ended (work a handler left running is stopped too); pass it to every I/O call.
   */
  signal: AbortSignal;
  job: JobInfo;
  upstream: UpstreamClients;
  /** Enqueue follow-up jobs (fan-out) with the same validation and defaults as any other enqueue. */
  enqueue: EnqueueFunction;
  config: Config;
}

/** A value JSON can carry. */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue | undefined };

/**
 * What a handler may return: nothing, or a small JSON result (counts, what each row became) kept
 * with the job's record and shown by the API, the dashboard and the CLI. Redacted like payloads
 * (`sensitive`) and bounded (MAX_RESULT_BYTES, 16 KiB of JSON; a larger one is kept as
 * `{ truncated: true, bytes, limit }`, and the job still succeeds). See docs/jobs.md.
 */
export type TaskResult = JsonValue | void;

/** What an `onExhausted` hook gets: the handler's context and the error of the last attempt. */
export interface ExhaustedContext extends TaskContext {
  error: Error;
}

export interface TaskDefinition<S extends TSchema = TSchema> {
  /** The file's name, for a task whose definition needs it (its job keys, its fan-out): the registry refuses a file named otherwise. */
  name?: string;
  /** One line for the API, the CLI and the dashboard. */
  description: string;
  /** JSON Schema of the payload; validated before the handler runs and at every enqueue. */
  payload: S;
  defaults?: TaskDefaults<Static<S>>;
  /**
   * Throw to fail the attempt (it is retried with backoff); throw PermanentJobError when no retry
   * can help (the job dies at once). Record permanent per-row outcomes as data and return. What it
   * returns (if anything) is the job's result.
   */
  run(payload: Static<S>, context: TaskContext): Promise<TaskResult>;
  /**
   * Runs once when a job of this task has used all its attempts (it is now dead), before the last
   * failure is recorded. A hook that throws is logged and recorded as `hook_failed`; it does not retry.
   */
  onExhausted?(payload: Static<S>, context: ExhaustedContext): Promise<void>;
  /** Payload fields (dotted paths) replaced by "[redacted]" in history, logs and the dashboard. */
  sensitive?: string[];
  /** Internal tasks run from the crontab or the service itself and cannot be triggered over HTTP. */
  internal?: boolean;
}

/** Identity function that gives a task file its types. */
export function defineTask<S extends TSchema>(definition: TaskDefinition<S>): TaskDefinition<S> {
  return definition;
}
