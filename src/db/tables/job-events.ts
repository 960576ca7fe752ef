import type { ColumnType, Generated, Selectable } from "kysely";

export const JOB_EVENTS = [
  "enqueued",
  "started",
  "succeeded",
  "failed",
  "exhausted",
  "hook_failed",
  "retried",
  "cancelled",
  "discarded",
  "rescued",
  // 0008_job_records_v2: an attempt whose pool was declared dead; 0012_attempt_outcomes: an attempt deferred by an upstream's Retry-After.
  "abandoned",
  "deferred",
] as const;
export type JobEventName = (typeof JOB_EVENTS)[number];

/** The append-only history of every job. */
export interface JobEventsTable {
  id: Generated<string>;
  job_id: ColumnType<string, string | number, never>;
  task: string;
  queue: string | null;
  event: JobEventName;
  attempt: number | null;
  source: string | null;
  worker_id: string | null;
  actor: string | null;
  error: string | null;
  stack: string | null;
  duration_ms: number | null;
  run_at: Date | null;
  trace_id: string | null;
  at: ColumnType<Date, Date | undefined, never>;
}

export type JobEventRow = Selectable<JobEventsTable>;
