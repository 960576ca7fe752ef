/**
 * Enqueueing through graphile-worker's public `add_job` SQL function, on whatever Kysely handle
 * the caller holds: inside a transaction the job exists only if the transaction commits.
 * Every path that creates jobs (HTTP, CLI, fan-out, application code) comes through here, so
 * payloads are validated and task defaults applied the same way everywhere.
 */
import { sql, type Kysely } from "kysely";
import type { Database } from "./db/schema.ts";
import type { RegisteredTask, TaskRegistry } from "./registry.ts";
import type { JobKeyMode } from "./task.ts";

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

export class InvalidPayloadError extends Error {
  override name = "InvalidPayloadError";
  readonly task: string;
  readonly errors: string[];
  constructor(task: string, errors: string[]) {
    super(`invalid payload for task '${task}': ${errors.join("; ")}`);
    this.task = task;
    this.errors = errors;
  }
}

/** Validates the payload (throwing InvalidPayloadError) and returns it with schema defaults applied. */
export function checkPayload(task: RegisteredTask, payload: unknown): unknown {
  const result = task.validate(payload);
  if (!result.ok) throw new InvalidPayloadError(task.name, result.errors);
  return result.value;
}

export async function enqueueJob(
  executor: Kysely<Database>,
  registry: TaskRegistry,
  taskName: string,
  payload: unknown,
  options: EnqueueOptions = {},
): Promise<EnqueuedJob> {
  const task = registry.get(taskName);
  const value = checkPayload(task, payload);
  const { defaults } = task;
  const queueName = options.queueName === undefined ? defaults.queueName : options.queueName;
  const jobKey = options.jobKey === undefined ? (defaults.jobKey?.(value) ?? null) : options.jobKey;
  const maxAttempts = options.maxAttempts ?? defaults.maxAttempts;
  const priority = options.priority ?? defaults.priority;
  const { rows } = await sql<{ id: string; run_at: Date; key: string | null }>`
    select id, run_at, key from graphile_worker.add_job(
      identifier => ${task.name},
      payload => ${JSON.stringify(value)}::json,
      queue_name => ${queueName},
      run_at => ${options.runAt ?? null}::timestamptz,
      max_attempts => ${maxAttempts}::int,
      job_key => ${jobKey},
      priority => ${priority}::int,
      job_key_mode => ${options.jobKeyMode ?? defaults.jobKeyMode}
    )`.execute(executor);
  const row = rows[0]!;
  return { id: String(row.id), task: task.name, queueName, runAt: row.run_at, priority, maxAttempts, jobKey: row.key };
}

/** An EnqueueFunction bound to one handle and registry, as handed to tasks and the HTTP layer. */
export function makeEnqueue(executor: Kysely<Database>, registry: TaskRegistry): EnqueueFunction {
  return (task, payload, options) => enqueueJob(executor, registry, task, payload, options);
}
