import type { GraphileJobsView } from "./tables/graphile-jobs.ts";
import type { JobEventsTable } from "./tables/job-events.ts";
import type { JobRecordsTable } from "./tables/job-records.ts";
import type { TaxaTable } from "./tables/taxa.ts";

/** Every table the service touches through Kysely. Tables of other schemas are keyed "schema.table". */
export interface Database {
  taxa: TaxaTable;
  "observing_jobs.job_records": JobRecordsTable;
  "observing_jobs.job_events": JobEventsTable;
  "graphile_worker.jobs": GraphileJobsView;
}
