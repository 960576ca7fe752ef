/**
 * Enqueueing through graphile-worker's public `add_job` / `add_jobs` SQL functions, on whatever
 * Kysely handle the caller holds: inside a transaction the job (and its history) exists only if
 * the transaction commits. Every path that creates jobs (HTTP, CLI, fan-out, application code)
 * comes through here, so payloads are validated, task defaults applied and the job's record
 * written the same way everywhere, in the same statement as the job itself.
 */
import { sql, type Kysely } from "kysely";
import type { JobSource } from "./db/tables/job-records.ts";
import { HISTORY_PAYLOAD_MAX_BYTES } from "./lifecycle/limits.ts";
import { redactPayload } from "./lifecycle/redaction.ts";
import { traceEnqueue, type EnqueueTrace, type TraceCarrier } from "./observability/tracing.ts";
import { insertEnqueuedRecords } from "./db/repositories/job-records.ts";
import { prepareStatement } from "./db/prepared-statements.ts";
import { splitJobMetadata } from "./job-metadata.ts";
import type { RegisteredTask, TaskRegistry } from "./registry.ts";
import type { EnqueuedJob, EnqueueFunction, EnqueueOptions, JobKeyMode } from "./task.ts";

/** Who enqueued, recorded in the job's history. */
export interface EnqueueOrigin {
  source: Exclude<JobSource, "sql">;
  /** The caller's identity (HTTP), when known. */
  actor?: string;
  traceId?: string;
  /** The job enqueueing this one (fan-out). */
  parentId?: string;
}

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

interface EnqueuedRow {
  id: string;
  run_at: Date;
  key: string | null;
  priority: number;
  max_attempts: number;
}

/** One job and its record in one statement: the request path's, kept prepared (src/db/prepared-statements.ts). */
const ENQUEUE_ONE = prepareStatement<
  {
    task: string;
    payload: string;
    queueName: string | null;
    runAt: Date | null;
    maxAttempts: number;
    jobKey: string | null;
    priority: number;
    jobKeyMode: JobKeyMode;
    source: EnqueueOrigin["source"];
    actor: string | null;
    parentId: string | null;
    traceId: string | null;
    stored: string;
    keepPayloadOnConflict: boolean;
  },
  EnqueuedRow
>(
  (v) => sql`
    with job as (
      select * from graphile_worker.add_job(
        identifier => ${v.task},
        payload => ${v.payload}::json,
        queue_name => ${v.queueName}::text,
        run_at => ${v.runAt}::timestamptz,
        max_attempts => ${v.maxAttempts}::int,
        job_key => ${v.jobKey}::text,
        priority => ${v.priority}::int,
        job_key_mode => ${v.jobKeyMode}::text
      )
    ), record as (
      ${insertEnqueuedRecords(
        { task: v.task, queue: v.queueName, origin: { source: v.source, actor: v.actor, parentId: v.parentId }, traceId: v.traceId, keepPayloadOnConflict: v.keepPayloadOnConflict },
        sql`select job.*, ${v.stored}::jsonb as stored from job`,
      )}
    )
    select id, run_at, key, priority, max_attempts from job`,
);

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
  const { rows } = await ENQUEUE_ONE.execute(executor, {
    task: task.name,
    payload: JSON.stringify(withTrace(spec.payload, trace.carrier)),
    queueName: spec.queueName,
    runAt: spec.runAt,
    maxAttempts: spec.maxAttempts,
    jobKey: spec.jobKey,
    priority: spec.priority,
    jobKeyMode: spec.jobKeyMode,
    source: origin.source,
    actor: origin.actor ?? null,
    parentId: origin.parentId ?? null,
    traceId: origin.traceId ?? trace.traceId ?? null,
    stored: JSON.stringify(redactPayload(spec.payload, task.sensitive, HISTORY_PAYLOAD_MAX_BYTES)),
    keepPayloadOnConflict: spec.jobKeyMode === "unsafe_dedupe",
  });
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
 * Many jobs of one task, with the same options, in one statement with their records: one round
 * trip however many jobs. Every payload is validated before anything is written; run it
 * inside a transaction to make the batch all-or-nothing. Payloads with the same job key are one
 * job, the last payload's (see lastPerJobKey): the result lists each job once.
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
  const resolved = payloads.flatMap((payload, index) => {
    try {
      return [resolveSpec(task, payload, options)];
    } catch (error) {
      if (!(error instanceof InvalidPayloadError)) throw error;
      errors.push(...error.errors.map((message) => message.replace(/^payload/, `payloads/${index}`)));
      return [];
    }
  });
  if (errors.length > 0) throw new InvalidPayloadError(task.name, errors);
  const specs = lastPerJobKey(resolved);
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
  // graphile-worker returns each job with the payload text it was given (json keeps text as it is),
  // which pairs it with its history copy in the same statement; equal payloads have equal copies.
  const stored = new Map<string, string>();
  for (const spec of jobSpecs) {
    const sent = JSON.stringify(spec.payload);
    if (!stored.has(sent)) stored.set(sent, JSON.stringify(redactPayload(splitJobMetadata(spec.payload).payload, task.sensitive, HISTORY_PAYLOAD_MAX_BYTES)));
  }
  const { rows } = await sql<EnqueuedRow>`
    with job as (
      select * from graphile_worker.add_jobs(
        array(select s from json_populate_recordset(null::graphile_worker.job_spec, ${JSON.stringify(jobSpecs)}::json) s),
        ${specs[0]!.jobKeyMode === "preserve_run_at"}
      )
    ), copy as (
      select * from unnest(${[...stored.keys()]}::text[], ${[...stored.values()]}::jsonb[]) as c(sent, stored)
    ), record as (
      ${insertEnqueuedRecords({ task: task.name, queue: queueName, origin, traceId, keepPayloadOnConflict: false }, sql`select job.*, copy.stored from job join copy on copy.sent = job.payload::text`)}
    )
    select id, run_at, key, priority, max_attempts from job order by id`.execute(executor);
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

/**
 * Payloads of one batch that map to the same job key are one job: the last one wins, as enqueueing
 * them one by one would (each `replace`s the one before). graphile-worker's add_jobs cannot update
 * one row twice in one statement, so the duplicates never reach it.
 */
function lastPerJobKey<T extends { jobKey: string | null }>(specs: readonly T[]): T[] {
  const last = new Map<string, number>();
  specs.forEach((spec, index) => {
    if (spec.jobKey !== null) last.set(spec.jobKey, index);
  });
  return specs.filter((spec, index) => spec.jobKey === null || last.get(spec.jobKey) === index);
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
