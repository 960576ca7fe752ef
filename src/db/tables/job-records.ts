import type { ColumnType, Selectable } from "kysely";

/** What the record keeps; "running" is not among them: graphile-worker's lock says it (src/lifecycle/jobs.ts). */
export const JOB_PHASES = ["waiting", "succeeded", "dead", "cancelled", "discarded"] as const;
export type JobPhase = (typeof JOB_PHASES)[number];

export const JOB_SOURCES = ["http", "cli", "cron", "app", "task", "sql"] as const;
export type JobSource = (typeof JOB_SOURCES)[number];

/** One row per job: its latest known state, kept after graphile-worker deletes the job. */
export interface JobRecordsTable {
  id: ColumnType<string, string | number, never>;
  task: string;
  queue: string | null;
  source: JobSource;
  /** Redacted (sensitive fields) and size-bounded. */
  payload: unknown;
  phase: JobPhase;
  priority: ColumnType<number, number | undefined, number>;
  attempts: ColumnType<number, number | undefined, number>;
  max_attempts: number;
  job_key: string | null;
  run_at: Date;
  last_error: string | null;
  trace_id: string | null;
  /** Who enqueued it (the API caller), when known. */
  enqueued_by: ColumnType<string | null, string | null | undefined, never>;
  /** The worker pool of the latest attempt. */
  worker_id: ColumnType<string | null, string | null | undefined, string | null>;
  /** The job that enqueued this one (fan-out), if any. */
  parent_id: ColumnType<string | null, string | number | null | undefined, never>;
  /** What the handler returned (src/lifecycle/results.ts); the job's only when the attempt below is the one that succeeded. */
  result: ColumnType<unknown, never, never>;
  /** The pool and attempt that wrote `result`. */
  result_worker_id: ColumnType<string | null, never, never>;
  result_attempt: ColumnType<number | null, never, never>;
  /** A caller waits for the job to end: the end is NOTIFYed (migration 0016). */
  notify_on_end: ColumnType<boolean | null, never, never>;
  created_at: ColumnType<Date, Date | undefined, Date>;
  started_at: Date | null;
  finished_at: Date | null;
  updated_at: ColumnType<Date, Date | undefined, Date>;
}

export type JobRecordRow = Selectable<JobRecordsTable>;

/** Succeeded jobs and failed attempts per minute (sharded by backend), for charts that outlive retention. */
export interface JobOutcomeCountsTable {
  minute: Date;
  shard: number;
  succeeded: number;
  failed: number;
}

/** Each crontab entry's (task and payload) last run and last success. */
export interface CronRunsTable {
  task: string;
  payload: unknown;
  last_run_at: Date | null;
  last_run_job_id: string | null;
  last_success_at: Date | null;
  last_success_job_id: string | null;
}
