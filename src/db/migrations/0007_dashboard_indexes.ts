import { sql, type Kysely } from "kysely";

/**
 * Frozen in time. Indexes for the ops dashboard's questions, so a page view never scans history:
 * - jobs finished and failed over the last hour (the overview's chart) read only the outcome
 *   events of that hour, from the index alone;
 * - a schedule's last run and last success read only the task's cron jobs, however many
 *   fanned-out or ad-hoc jobs of the same task sit above them.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create index job_events_outcome_at_idx on observing_jobs.job_events (at, event)
    where event in ('succeeded', 'failed')`.execute(db);
  await sql`create index job_records_cron_task_id_idx on observing_jobs.job_records (task, id desc) where source = 'cron'`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop index if exists observing_jobs.job_records_cron_task_id_idx`.execute(db);
  await sql`drop index if exists observing_jobs.job_events_outcome_at_idx`.execute(db);
}
