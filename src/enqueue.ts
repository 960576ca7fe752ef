/**
 * Enqueueing through graphile-worker's public `add_job` / `add_jobs` SQL functions, on whatever
 * Kysely handle the caller holds: inside a transaction the job (and its history) exists only if
 * the transaction commits. Every path that creates jobs (HTTP, CLI, fan-out, application code)
 * comes through here, so payloads are validated, task defaults applied and the `enqueued` event
 * recorded the same way everywhere, in the same statement as the job itself.
 */
import { sql, type Kysely } from "kysely";
import type { JobSource } from "./db/tables/job-records.ts";
import { HISTORY_PAYLOAD_MAX_BYTES } from "./lifecycle/limits.ts";
import { redactPayload } from "./lifecycle/redaction.ts";
import { traceEnqueue, type EnqueueTrace, type TraceCarrier } from "./observability/tracing.ts";
import { splitJobMetadata } from "./job-metadata.ts";
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

/** Who enqueued, recorded in the job's history. */
export interface EnqueueOrigin {
  source: Exclude<JobSource, "sql">;
  /** The caller's identity (HTTP), when known. */
  actor?: string;
  traceId?: string;
  /** The job enqueueing this one (fan-out). */
  parentId?: string;
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

// Any application's Kysely instance or transaction: the statements name their tables themselves.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyKysely = Kysely<any>;

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

interface JobSpec {
  payload: unknown;
  queueName: string | null;
  jobKey: string | null;
  maxAttempts: number;
  priority: number;
  runAt: Date | null;
  jobKeyMode: JobKeyMode;
}

function resolveSpec(task: RegisteredTask, payload: unknown, options: EnqueueOptions): JobSpec {
  const value = checkPayload(task, payload);
  const { defaults } = task;
  return {
    payload: value,
    queueName: options.queueName === undefined ? defaults.queueName : options.queueName,
    jobKey: options.jobKey === undefined ? (defaults.jobKey?.(value) ?? null) : options.jobKey,
    maxAttempts: options.maxAttempts ?? defaults.maxAttempts,
    priority: options.priority ?? defaults.priority,
    runAt: options.runAt ?? null,
    jobKeyMode: options.jobKeyMode ?? defaults.jobKeyMode,
  };
}

export function enqueueJob(
  executor: AnyKysely,
  registry: TaskRegistry,
  taskName: string,
  payload: unknown,
  options: EnqueueOptions = {},
  origin: EnqueueOrigin = { source: "app" },
): Promise<EnqueuedJob> {
  return traceEnqueue(taskName, (trace) => addJob(executor, registry, taskName, payload, options, origin, trace));
}

async function addJob(
  executor: AnyKysely,
  registry: TaskRegistry,
  taskName: string,
  payload: unknown,
  options: EnqueueOptions,
  origin: EnqueueOrigin,
  trace: EnqueueTrace,
): Promise<EnqueuedJob> {
  const task = registry.get(taskName);
  const spec = resolveSpec(task, payload, options);
  const stored = JSON.stringify(redactPayload(spec.payload, task.sensitive, HISTORY_PAYLOAD_MAX_BYTES));
  const traceId = origin.traceId ?? trace.traceId ?? null;
  const { rows } = await sql<{ id: string; run_at: Date; key: string | null; priority: number; max_attempts: number }>`
    with job as (
      select * from graphile_worker.add_job(
        identifier => ${task.name},
        payload => ${JSON.stringify(withTrace(spec.payload, trace.carrier))}::json,
        queue_name => ${spec.queueName}::text,
        run_at => ${spec.runAt}::timestamptz,
        max_attempts => ${spec.maxAttempts}::int,
        job_key => ${spec.jobKey}::text,
        priority => ${spec.priority}::int,
        job_key_mode => ${spec.jobKeyMode}::text
      )
    ), record as (
      insert into observing_jobs.job_records as r
        (id, task, queue, source, payload, phase, priority, attempts, max_attempts, job_key, run_at, trace_id, parent_id)
      select job.id, ${task.name}, ${spec.queueName}::text, ${origin.source}, ${stored}::jsonb, 'waiting',
        job.priority, job.attempts, job.max_attempts, job.key, job.run_at, ${traceId}::text, ${origin.parentId ?? null}::bigint
      from job
      on conflict (id) do update set
        -- unsafe_dedupe keeps the existing job as it was, payload included
        payload = case when ${spec.jobKeyMode}::text = 'unsafe_dedupe' then r.payload else excluded.payload end,
        queue = excluded.queue, phase = 'waiting', priority = excluded.priority, attempts = excluded.attempts,
        max_attempts = excluded.max_attempts, job_key = excluded.job_key, run_at = excluded.run_at,
        finished_at = null, updated_at = now()
    ), event as (
      insert into observing_jobs.job_events (job_id, task, queue, event, attempt, source, actor, run_at, trace_id)
      select job.id, ${task.name}, ${spec.queueName}::text, 'enqueued', job.attempts, ${origin.source},
        ${origin.actor ?? null}::text, job.run_at, ${traceId}::text
      from job
    )
    select id, run_at, key, priority, max_attempts from job`.execute(executor);
  const row = rows[0]!;
  return {
    id: String(row.id),
    task: task.name,
    queueName: spec.queueName,
    runAt: row.run_at,
    priority: row.priority,
    maxAttempts: row.max_attempts,
    jobKey: row.key,
  };
}

/**
 * Many jobs of one task, with the same options, in one `add_jobs` call plus one history statement:
 * two round trips however many jobs. Every payload is validated before anything is written; run it
 * inside a transaction to make the batch all-or-nothing.
 */
export function enqueueJobs(
  executor: AnyKysely,
  registry: TaskRegistry,
  taskName: string,
  payloads: readonly unknown[],
  options: EnqueueOptions = {},
  origin: EnqueueOrigin = { source: "app" },
): Promise<EnqueuedJob[]> {
  return traceEnqueue(taskName, (trace) => addJobs(executor, registry, taskName, payloads, options, origin, trace));
}

async function addJobs(
  executor: AnyKysely,
  registry: TaskRegistry,
  taskName: string,
  payloads: readonly unknown[],
  options: EnqueueOptions,
  origin: EnqueueOrigin,
  trace: EnqueueTrace,
): Promise<EnqueuedJob[]> {
  const task = registry.get(taskName);
  if (options.jobKeyMode === "unsafe_dedupe" || (!options.jobKeyMode && task.defaults.jobKeyMode === "unsafe_dedupe")) {
    throw new InvalidPayloadError(task.name, ["batch enqueue supports job key modes 'replace' and 'preserve_run_at' only"]);
  }
  const errors: string[] = [];
  const specs = payloads.flatMap((payload, index) => {
    try {
      return [resolveSpec(task, payload, options)];
    } catch (error) {
      if (!(error instanceof InvalidPayloadError)) throw error;
      errors.push(...error.errors.map((message) => message.replace(/^payload/, `payloads/${index}`)));
      return [];
    }
  });
  if (errors.length > 0) throw new InvalidPayloadError(task.name, errors);
  if (specs.length === 0) return [];
  const queueName = specs[0]!.queueName;
  const traceId = origin.traceId ?? trace.traceId ?? null;
  const jobSpecs = specs.map((spec) => ({
    identifier: task.name,
    payload: withTrace(spec.payload, trace.carrier),
    queue_name: spec.queueName,
    run_at: spec.runAt,
    max_attempts: spec.maxAttempts,
    job_key: spec.jobKey,
    priority: spec.priority,
  }));
  const { rows } = await sql<{ id: string; run_at: Date; key: string | null; priority: number; max_attempts: number; attempts: number; payload: unknown }>`
    select id, run_at, key, priority, max_attempts, attempts, payload
    from graphile_worker.add_jobs(
      array(select s from json_populate_recordset(null::graphile_worker.job_spec, ${JSON.stringify(jobSpecs)}::json) s),
      ${specs[0]!.jobKeyMode === "preserve_run_at"}
    )
    order by id`.execute(executor);
  const stored = rows.map((row) => JSON.stringify(redactPayload(splitJobMetadata(row.payload).payload, task.sensitive, HISTORY_PAYLOAD_MAX_BYTES)));
  await sql`
    with job as (
      select * from unnest(
        ${rows.map((row) => row.id)}::bigint[], ${stored}::jsonb[], ${rows.map((row) => row.priority)}::int[],
        ${rows.map((row) => row.attempts)}::int[], ${rows.map((row) => row.max_attempts)}::int[],
        ${rows.map((row) => row.key)}::text[], ${rows.map((row) => row.run_at)}::timestamptz[]
      ) as j(id, payload, priority, attempts, max_attempts, key, run_at)
    ), record as (
      insert into observing_jobs.job_records as r
        (id, task, queue, source, payload, phase, priority, attempts, max_attempts, job_key, run_at, trace_id, parent_id)
      select id, ${task.name}, ${queueName}::text, ${origin.source}, payload, 'waiting', priority, attempts, max_attempts,
        key, run_at, ${traceId}::text, ${origin.parentId ?? null}::bigint
      from job
      on conflict (id) do update set
        payload = excluded.payload, queue = excluded.queue, phase = 'waiting', priority = excluded.priority,
        attempts = excluded.attempts, max_attempts = excluded.max_attempts, job_key = excluded.job_key,
        run_at = excluded.run_at, finished_at = null, updated_at = now()
    )
    insert into observing_jobs.job_events (job_id, task, queue, event, attempt, source, actor, run_at, trace_id)
    select id, ${task.name}, ${queueName}::text, 'enqueued', attempts, ${origin.source}, ${origin.actor ?? null}::text,
      run_at, ${traceId}::text
    from job`.execute(executor);
  return rows.map((row) => ({
    id: String(row.id),
    task: task.name,
    queueName,
    runAt: row.run_at,
    priority: row.priority,
    maxAttempts: row.max_attempts,
    jobKey: row.key,
  }));
}

/** The payload as graphile-worker stores it: the task's payload plus the enqueuing trace context. */
function withTrace(payload: unknown, carrier: TraceCarrier | undefined): unknown {
  if (!carrier || !payload || typeof payload !== "object" || Array.isArray(payload)) return payload;
  return { ...payload, _trace: carrier };
}

/** An EnqueueFunction bound to one handle, registry and origin, as handed to tasks. */
export function makeEnqueue(executor: AnyKysely, registry: TaskRegistry, origin: EnqueueOrigin): EnqueueFunction {
  return (task, payload, options) => enqueueJob(executor, registry, task, payload, options, origin);
}
