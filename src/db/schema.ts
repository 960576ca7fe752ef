import type { DashboardSessionsTable } from "./tables/dashboard-sessions.ts";
import type { GraphileJobsView } from "./tables/graphile-jobs.ts";
import type { JobEventsTable } from "./tables/job-events.ts";
import type { CronRunsTable, JobOutcomeCountsTable, JobRecordsTable } from "./tables/job-records.ts";
import type { TaxaTable } from "./tables/taxa.ts";
import type { WorkerHeartbeatsTable } from "./tables/worker-heartbeats.ts";

/** Every table the service touches through Kysely. Tables of other schemas are keyed "schema.table". */
export interface Database {
  taxa: TaxaTable;
  "observing_jobs.job_records": JobRecordsTable;
  "observing_jobs.job_events": JobEventsTable;
  "observing_jobs.job_outcome_counts": JobOutcomeCountsTable;
  "observing_jobs.cron_runs": CronRunsTable;
  "observing_jobs.worker_heartbeats": WorkerHeartbeatsTable;
  "observing_jobs.dashboard_sessions": DashboardSessionsTable;
  "graphile_worker.jobs": GraphileJobsView;
}
