/**
 * Records what happens to jobs while they run (started, succeeded, failed, exhausted) without
 * slowing the worker: the per-job path only appends to an in-memory buffer, and a flusher writes
 * the buffer in a few set-based statements every `flushIntervalMs`, when it grows large, and on
 * shutdown. `enqueued` events and operator actions are written synchronously elsewhere, in the same
 * statement or transaction as the change they describe.
 */
import { sql } from "kysely";
import type { Db } from "../db/database.ts";
import type { JobPhase } from "../db/tables/job-records.ts";
import type { Logger } from "../observability/logger.ts";
import type { TaskRegistry } from "../registry.ts";
import type { AttemptObserver, JobSnapshot } from "../worker/attempt.ts";
import { HISTORY_PAYLOAD_MAX_BYTES, HISTORY_STACK_MAX_CHARS } from "./limits.ts";
import { redactPayload } from "./redaction.ts";

type Fact =
  | { kind: "started"; job: JobSnapshot; at: Date; workerId: string | null; payload: unknown }
  | { kind: "succeeded"; job: JobSnapshot; at: Date; durationMs: number }
  | { kind: "failed"; job: JobSnapshot; at: Date; durationMs: number; error: string; stack: string | null; nextRunAt: Date | null }
  | { kind: "hook_failed"; job: JobSnapshot; at: Date; error: string; stack: string | null };

export interface HistoryOptions {
  /** How often buffered events are written. @defaultValue 100 */
  flushIntervalMs?: number;
  /** A buffer this long is written at once. @defaultValue 500 */
  flushSize?: number;
  /** Events kept while the database is unreachable; beyond this the oldest are dropped (and logged). @defaultValue 100000 */
  maxBuffered?: number;
}

export class HistoryRecorder implements AttemptObserver {
  readonly #db: Db;
  readonly #registry: TaskRegistry;
  readonly #logger: Logger;
  readonly #flushSize: number;
  readonly #maxBuffered: number;
  #buffer: Fact[] = [];
  #flushing: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;

  constructor(db: Db, registry: TaskRegistry, logger: Logger, options: HistoryOptions = {}) {
    this.#db = db;
    this.#registry = registry;
    this.#logger = logger.child({ component: "job-history" });
    this.#flushSize = options.flushSize ?? 500;
    this.#maxBuffered = options.maxBuffered ?? 100_000;
    this.#timer = setInterval(() => void this.flush(), options.flushIntervalMs ?? 100);
    this.#timer.unref();
  }

  started(job: JobSnapshot, payload: unknown, workerId: string | null): void {
    this.#push({ kind: "started", job, at: new Date(), workerId, payload });
  }

  succeeded(job: JobSnapshot, durationMs: number): void {
    this.#push({ kind: "succeeded", job, at: new Date(), durationMs });
  }

  /** A failed attempt; on the last attempt the job is dead and an `exhausted` event follows. */
  failed(job: JobSnapshot, error: unknown, durationMs: number): void {
    const at = new Date();
    const exhausted = job.attempt >= job.maxAttempts;
    this.#push({ kind: "failed", job, at, durationMs, ...describeError(error), nextRunAt: exhausted ? null : nextRunAt(job, at) });
  }

  hookFailed(job: JobSnapshot, error: unknown): void {
    this.#push({ kind: "hook_failed", job, at: new Date(), ...describeError(error) });
  }

  /** Writes everything buffered so far. Concurrent calls share one write. */
  async flush(): Promise<void> {
    while (this.#flushing) await this.#flushing;
    if (this.#buffer.length === 0) return;
    const batch = this.#buffer;
    this.#buffer = [];
    this.#flushing = this.#write(batch)
      .catch((error: unknown) => {
        // Keep the events for the next flush (the database may be restarting); never lose them silently.
        this.#buffer = [...batch, ...this.#buffer];
        const overflow = this.#buffer.length - this.#maxBuffered;
        if (overflow > 0) {
          this.#buffer.splice(0, overflow);
          this.#logger.error({ dropped: overflow }, "job history buffer full: dropped the oldest events");
        }
        this.#logger.warn({ err: error, buffered: this.#buffer.length }, "could not write job history; will retry");
      })
      .finally(() => {
        this.#flushing = undefined;
      });
    await this.#flushing;
  }

  /** Stops the timer and writes what is left (tries a few times; the rest is logged as lost). */
  async close(): Promise<void> {
    clearInterval(this.#timer);
    for (let attempt = 0; attempt < 3 && this.#buffer.length > 0; attempt++) await this.flush();
    if (this.#buffer.length > 0) this.#logger.error({ lost: this.#buffer.length }, "job history could not be written before shutdown");
  }

  #push(fact: Fact): void {
    this.#buffer.push(fact);
    if (this.#buffer.length >= this.#flushSize && !this.#flushing) void this.flush();
  }

  async #write(batch: Fact[]): Promise<void> {
    await this.#db.transaction().execute(async (trx) => {
      const ids = [...new Set(batch.map((fact) => fact.job.id))];
      const known = new Set(
        (await trx.selectFrom("observing_jobs.job_records").select("id").where("id", "in", ids).execute()).map((row) => String(row.id)),
      );
      const records = collapse(batch, known, this.#registry);
      const events = batch.flatMap((fact) => eventsOf(fact, known));
      await insertEvents(trx, events);
      await upsertRecords(trx, records);
    });
  }
}

interface EventRow {
  jobId: string;
  traceId: string | null;
  task: string;
  queue: string | null;
  event: string;
  attempt: number | null;
  source: string | null;
  workerId: string | null;
  error: string | null;
  stack: string | null;
  durationMs: number | null;
  runAt: Date | null;
  at: Date;
}

function eventsOf(fact: Fact, known: Set<string>): EventRow[] {
  const { job } = fact;
  const base = { jobId: job.id, traceId: job.traceId, task: job.task, queue: job.queue, attempt: job.attempt, source: null, workerId: null, error: null, stack: null, durationMs: null, runAt: null, at: fact.at };
  switch (fact.kind) {
    case "started": {
      const rows: EventRow[] = [];
      if (!known.has(job.id)) {
        // Added by plain SQL (or graphile-worker's cron): first seen now, enqueued when it was created.
        known.add(job.id);
        rows.push({ ...base, event: "enqueued", attempt: 0, source: sourceOf(fact.payload), runAt: job.runAt, at: job.createdAt });
      }
      rows.push({ ...base, event: "started", workerId: fact.workerId });
      return rows;
    }
    case "succeeded":
      return [{ ...base, event: "succeeded", durationMs: fact.durationMs }];
    case "failed": {
      const failed = { ...base, event: "failed", error: fact.error, stack: fact.stack, durationMs: fact.durationMs, runAt: fact.nextRunAt };
      return fact.nextRunAt ? [failed] : [failed, { ...base, event: "exhausted", error: fact.error }];
    }
    case "hook_failed":
      return [{ ...base, event: "hook_failed", error: fact.error, stack: fact.stack }];
  }
}

interface RecordRow {
  id: string;
  task: string;
  queue: string | null;
  source: string;
  payload: string | null;
  phase: JobPhase;
  priority: number;
  attempts: number;
  maxAttempts: number;
  key: string | null;
  runAt: Date;
  lastError: string | null;
  createdAt: Date;
  startedAt: Date | null;
  finishedAt: Date | null;
  updatedAt: Date;
}

/** Folds a batch's facts into one row per job: its state after the last of them. */
function collapse(batch: Fact[], known: Set<string>, registry: TaskRegistry): RecordRow[] {
  const rows = new Map<string, RecordRow>();
  for (const fact of batch) {
    const { job } = fact;
    let row = rows.get(job.id);
    if (!row) {
      const payload = fact.kind === "started" && !known.has(job.id) ? fact.payload : undefined;
      row = {
        id: job.id,
        task: job.task,
        queue: job.queue,
        source: sourceOf(payload),
        payload:
          payload === undefined
            ? null
            : JSON.stringify(redactPayload(withoutTrace(payload), registry.find(job.task)?.sensitive ?? [], HISTORY_PAYLOAD_MAX_BYTES)),
        phase: "running",
        priority: job.priority,
        attempts: job.attempt,
        maxAttempts: job.maxAttempts,
        key: job.key,
        runAt: job.runAt,
        lastError: null,
        createdAt: job.createdAt,
        startedAt: null,
        finishedAt: null,
        updatedAt: fact.at,
      };
      rows.set(job.id, row);
    }
    row.attempts = job.attempt;
    row.updatedAt = fact.at;
    switch (fact.kind) {
      case "started":
        Object.assign(row, { phase: "running", startedAt: fact.at, finishedAt: null });
        break;
      case "succeeded":
        Object.assign(row, { phase: "succeeded", finishedAt: fact.at });
        break;
      case "failed":
        Object.assign(row, {
          phase: fact.nextRunAt ? "waiting" : "dead",
          lastError: fact.error,
          runAt: fact.nextRunAt ?? row.runAt,
          finishedAt: fact.nextRunAt ? null : fact.at,
        });
        break;
      case "hook_failed":
        break;
    }
  }
  return [...rows.values()];
}

async function insertEvents(trx: Db, events: EventRow[]): Promise<void> {
  if (events.length === 0) return;
  const column = <K extends keyof EventRow>(key: K) => events.map((event) => event[key]);
  await sql`
    insert into observing_jobs.job_events (job_id, trace_id, task, queue, event, attempt, source, worker_id, error, stack, duration_ms, run_at, at)
    select * from unnest(
      ${column("jobId")}::bigint[], ${column("traceId")}::text[], ${column("task")}::text[], ${column("queue")}::text[], ${column("event")}::text[],
      ${column("attempt")}::int[], ${column("source")}::text[], ${column("workerId")}::text[], ${column("error")}::text[],
      ${column("stack")}::text[], ${column("durationMs")}::float8[], ${column("runAt")}::timestamptz[], ${column("at")}::timestamptz[]
    )`.execute(trx);
}

async function upsertRecords(trx: Db, records: RecordRow[]): Promise<void> {
  if (records.length === 0) return;
  const column = <K extends keyof RecordRow>(key: K) => records.map((record) => record[key]);
  // A fact about an older attempt never overwrites a newer one, and an operator's cancel or
  // discard is final.
  await sql`
    insert into observing_jobs.job_records as r
      (id, task, queue, source, payload, phase, priority, attempts, max_attempts, job_key, run_at, last_error,
       created_at, started_at, finished_at, updated_at)
    select * from unnest(
      ${column("id")}::bigint[], ${column("task")}::text[], ${column("queue")}::text[], ${column("source")}::text[],
      ${column("payload")}::jsonb[], ${column("phase")}::text[], ${column("priority")}::int[], ${column("attempts")}::int[],
      ${column("maxAttempts")}::int[], ${column("key")}::text[], ${column("runAt")}::timestamptz[], ${column("lastError")}::text[],
      ${column("createdAt")}::timestamptz[], ${column("startedAt")}::timestamptz[], ${column("finishedAt")}::timestamptz[],
      ${column("updatedAt")}::timestamptz[]
    )
    on conflict (id) do update set
      queue = excluded.queue, phase = excluded.phase, attempts = excluded.attempts, max_attempts = excluded.max_attempts,
      run_at = excluded.run_at, last_error = coalesce(excluded.last_error, r.last_error),
      started_at = coalesce(excluded.started_at, r.started_at), finished_at = excluded.finished_at,
      updated_at = excluded.updated_at
    where excluded.attempts >= r.attempts and r.phase not in ('cancelled', 'discarded')`.execute(trx);
}

/** The payload as history keeps it: `_cron` (when and whether back-filled) stays, the trace context goes to its column. */
function withoutTrace(payload: unknown): unknown {
  if (!payload || typeof payload !== "object" || Array.isArray(payload) || !("_trace" in payload)) return payload;
  const { _trace: _, ...rest } = payload as Record<string, unknown>;
  return rest;
}

function sourceOf(payload: unknown): "cron" | "sql" {
  return payload && typeof payload === "object" && "_cron" in payload ? "cron" : "sql";
}

function describeError(error: unknown): { error: string; stack: string | null } {
  if (error instanceof Error) {
    return { error: error.message || error.name, stack: error.stack ? error.stack.slice(0, HISTORY_STACK_MAX_CHARS) : null };
  }
  return { error: String(error), stack: null };
}

/** graphile-worker's backoff: `greatest(now(), run_at) + exp(least(attempts, 10))` seconds. */
export function nextRunAt(job: Pick<JobSnapshot, "attempt" | "runAt">, now: Date): Date {
  const base = Math.max(now.getTime(), job.runAt.getTime());
  return new Date(base + Math.exp(Math.min(job.attempt, 10)) * 1000);
}
