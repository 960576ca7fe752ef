import type { Migration } from "kysely/migration";
import * as taxa from "./0001_taxa.ts";
import * as jobHistory from "./0002_job_history.ts";
import * as taxaEnrichment from "./0003_taxa_enrichment.ts";
import * as jobParent from "./0004_job_parent.ts";
import * as workerHeartbeats from "./0005_worker_heartbeats.ts";
import * as dashboardIndexes from "./0007_dashboard_indexes.ts";
import * as jobRecordsV2 from "./0008_job_records_v2.ts";
import * as workerTasks from "./0009_worker_tasks.ts";
import * as jobFencing from "./0010_job_fencing.ts";
import * as internalTasks from "./0011_internal_tasks.ts";
import * as attemptOutcomes from "./0012_attempt_outcomes.ts";
import * as dashboardSessions from "./0013_dashboard_sessions.ts";
import * as heartbeatRunningJobs from "./0014_heartbeat_running_jobs.ts";
import * as fenceWaitsForSweeper from "./0015_fence_waits_for_sweeper.ts";
import * as jobResults from "./0016_job_results.ts";
import * as pauses from "./0017_pauses.ts";
import * as globalCaps from "./0018_global_caps.ts";
import * as deferralNotAFailure from "./0019_deferral_not_a_failure.ts";
import * as missingRecordsInOneStatement from "./0020_missing_records_in_one_statement.ts";
import * as completionRecordsById from "./0021_completion_records_by_id.ts";
import * as fencesCheckedOnce from "./0022_fences_checked_once.ts";
import * as nonObjectPayloads from "./0023_non_object_payloads.ts";

/** Every migration, in order. Imported statically so the build and the image carry them. */
export const migrations: Record<string, Migration> = {
  "0001_taxa": taxa,
  "0002_job_history": jobHistory,
  "0003_taxa_enrichment": taxaEnrichment,
  "0004_job_parent": jobParent,
  "0005_worker_heartbeats": workerHeartbeats,
  "0007_dashboard_indexes": dashboardIndexes,
  "0008_job_records_v2": jobRecordsV2,
  "0009_worker_tasks": workerTasks,
  "0010_job_fencing": jobFencing,
  "0011_internal_tasks": internalTasks,
  "0012_attempt_outcomes": attemptOutcomes,
  "0013_dashboard_sessions": dashboardSessions,
  "0014_heartbeat_running_jobs": heartbeatRunningJobs,
  "0015_fence_waits_for_sweeper": fenceWaitsForSweeper,
  "0016_job_results": jobResults,
  "0017_pauses": pauses,
  "0018_global_caps": globalCaps,
  "0019_deferral_not_a_failure": deferralNotAFailure,
  "0020_missing_records_in_one_statement": missingRecordsInOneStatement,
  "0021_completion_records_by_id": completionRecordsById,
  "0022_fences_checked_once": fencesCheckedOnce,
  "0023_non_object_payloads": nonObjectPayloads,
};
