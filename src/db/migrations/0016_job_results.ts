import { sql, type Kysely } from "kysely";

/**
 * Frozen in time. A job's result and a way to be told when a job ends.
 *
 * - `result` is what the handler returned (redacted, cleaned, size-bounded: src/lifecycle/results.ts),
 *   written by the worker in one update just before graphile-worker's completion, and only when the
 *   handler returned something. `result_worker_id` and `result_attempt` say which attempt wrote it:
 *   the result belongs to the job only when they are the pool and attempt that succeeded (the record's
 *   `worker_id` and `attempts`), so the result of an attempt whose pool was declared dead before its
 *   completion (it was discarded, the job ran again) is never shown as the job's.
 * - `notify_on_end` is set by a caller that waits for the job (`POST /jobs/{task}?wait=`): when such a
 *   record's phase leaves `waiting`, a NOTIFY on `observing_jobs_job_ended` carries the job's id. Jobs
 *   nobody waits for pay only the trigger's WHEN test (no function call, no NOTIFY).
 * The columns are nullable without defaults, so adding them rewrites nothing.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    alter table observing_jobs.job_records
      add column result jsonb,
      add column result_worker_id text,
      add column result_attempt integer,
      add column notify_on_end boolean`.execute(db);
  await sql`
    create function observing_jobs.notify_job_ended() returns trigger
    language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
    begin
      perform pg_notify('observing_jobs_job_ended', new.id::text);
      return null;
    end $$`.execute(db);
  await sql`
    create trigger observing_jobs_job_ended after update of phase on observing_jobs.job_records
    for each row when (new.notify_on_end and new.phase <> 'waiting' and new.phase is distinct from old.phase)
    execute function observing_jobs.notify_job_ended()`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop trigger if exists observing_jobs_job_ended on observing_jobs.job_records`.execute(db);
  await sql`drop function if exists observing_jobs.notify_job_ended()`.execute(db);
  await sql`
    alter table observing_jobs.job_records
      drop column if exists result, drop column if exists result_worker_id,
      drop column if exists result_attempt, drop column if exists notify_on_end`.execute(db);
}
