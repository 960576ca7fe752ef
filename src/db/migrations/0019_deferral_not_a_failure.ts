import { sql, type Kysely } from "kysely";

/**
 * Frozen in time. A deferral (an upstream's Retry-After: the job waits with its attempt given
 * back, src/worker/job-control.ts deferJob) moves run_at and unlocks the job as a failure does, so
 * 0008's record_failed_attempt counted it as a failed attempt in job_outcome_counts (the
 * dashboard's chart and the overview's failure rate). It still makes the record `waiting` and notes
 * the cron run; only the failure count is skipped when the attempt was given back (attempts went down).
 */
const RECORD_FAILED_ATTEMPT = String.raw`
create or replace function observing_jobs.record_failed_attempt() returns trigger
   language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
   declare
     dead boolean := new.attempts >= new.max_attempts;
   begin
     if current_setting('observing_jobs.recorded', true) = 'on' then return null; end if;
     update observing_jobs.job_records r
     set phase = case when dead then 'dead' else 'waiting' end, attempts = new.attempts, max_attempts = new.max_attempts,
       last_error = new.last_error, run_at = new.run_at, started_at = old.locked_at,
       finished_at = case when dead then now() end, worker_id = old.locked_by, updated_at = now()
     where r.id = new.id and r.phase not in ('cancelled', 'discarded');
     if not found then
       perform observing_jobs.insert_missing_record(new, case when dead then 'dead' else 'waiting' end);
     end if;
     if dead then
       insert into observing_jobs.job_events (job_id, task, queue, event, attempt, error)
       select new.id, r.task, r.queue, 'exhausted', new.attempts, new.last_error
       from observing_jobs.job_records r where r.id = new.id;
     end if;
     if observing_jobs.is_cron(new.payload) then perform observing_jobs.note_cron_run(new, false); end if;
     -- An attempt given back (deferJob: the upstream asked to wait) is not the job's failure.
     if new.attempts >= old.attempts then perform observing_jobs.count_outcomes(0, 1); end if;
     return null;
   end $$`;

const PREVIOUS = String.raw`
create or replace function observing_jobs.record_failed_attempt() returns trigger
   language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
   declare
     dead boolean := new.attempts >= new.max_attempts;
   begin
     if current_setting('observing_jobs.recorded', true) = 'on' then return null; end if;
     update observing_jobs.job_records r
     set phase = case when dead then 'dead' else 'waiting' end, attempts = new.attempts, max_attempts = new.max_attempts,
       last_error = new.last_error, run_at = new.run_at, started_at = old.locked_at,
       finished_at = case when dead then now() end, worker_id = old.locked_by, updated_at = now()
     where r.id = new.id and r.phase not in ('cancelled', 'discarded');
     if not found then
       perform observing_jobs.insert_missing_record(new, case when dead then 'dead' else 'waiting' end);
     end if;
     if dead then
       insert into observing_jobs.job_events (job_id, task, queue, event, attempt, error)
       select new.id, r.task, r.queue, 'exhausted', new.attempts, new.last_error
       from observing_jobs.job_records r where r.id = new.id;
     end if;
     if observing_jobs.is_cron(new.payload) then perform observing_jobs.note_cron_run(new, false); end if;
     perform observing_jobs.count_outcomes(0, 1);
     return null;
   end $$`;

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql.raw(RECORD_FAILED_ATTEMPT).execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql.raw(PREVIOUS).execute(db);
}
