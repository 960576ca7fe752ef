import type { ColumnType } from "kysely";

type ReadOnly<T> = ColumnType<T, never, never>;

/**
 * graphile-worker's public `jobs` view, read-only. Its payloads are not exposed; the service keeps
 * its own copy in job_records. Never read it inside a transaction (graphile-worker's advice).
 */
export interface GraphileJobsView {
  id: ReadOnly<string>;
  queue_name: ReadOnly<string | null>;
  task_identifier: ReadOnly<string>;
  priority: ReadOnly<number>;
  run_at: ReadOnly<Date>;
  attempts: ReadOnly<number>;
  max_attempts: ReadOnly<number>;
  last_error: ReadOnly<string | null>;
  created_at: ReadOnly<Date>;
  updated_at: ReadOnly<Date>;
  key: ReadOnly<string | null>;
  locked_at: ReadOnly<Date | null>;
  locked_by: ReadOnly<string | null>;
}
