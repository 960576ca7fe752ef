import { sql, type Kysely } from "kysely";
import { RECORDING_FUNCTIONS } from "./0008_job_records_v2.ts";

/**
 * Frozen in time. A deferral (an upstream's Retry-After: the job waits with its attempt given
 * back, src/worker/job-control.ts deferJob) moves run_at and unlocks the job as a failure does, so
 * 0008's record_failed_attempt counted it as a failed attempt in job_outcome_counts (the
 * dashboard's chart and the overview's failure rate). It still makes the record `waiting` and notes
 * the cron run; only the failure count is skipped when the attempt was given back (attempts went down).
 */
const COUNT_FAILURE = "     perform observing_jobs.count_outcomes(0, 1);\n";

/** 0008's record_failed_attempt, as `create or replace`. */
function previousDefinition(): string {
  const definition = RECORDING_FUNCTIONS.find((statement) => statement.startsWith("create function observing_jobs.record_failed_attempt()"));
  if (!definition?.includes(COUNT_FAILURE)) throw new Error("0019: 0008's record_failed_attempt is not the one this migration changes");
  return definition.replace("create function", "create or replace function");
}

export async function up(db: Kysely<unknown>): Promise<void> {
  const counted = "     -- An attempt given back (deferJob: the upstream asked to wait) is not the job's failure.\n     if new.attempts >= old.attempts then perform observing_jobs.count_outcomes(0, 1); end if;\n";
  await sql.raw(previousDefinition().replace(COUNT_FAILURE, counted)).execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql.raw(previousDefinition()).execute(db);
}
