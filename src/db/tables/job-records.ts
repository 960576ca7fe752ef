import type { ColumnType, Selectable } from "kysely";

export const JOB_PHASES = ["waiting", "running", "succeeded", "dead", "cancelled", "discarded"] as const;
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
  /** The job that enqueued this one (fan-out), if any. */
  parent_id: ColumnType<string | null, string | number | null | undefined, never>;
  created_at: ColumnType<Date, Date | undefined, Date>;
  started_at: Date | null;
  finished_at: Date | null;
  updated_at: ColumnType<Date, Date | undefined, Date>;
}

export type JobRecordRow = Selectable<JobRecordsTable>;
