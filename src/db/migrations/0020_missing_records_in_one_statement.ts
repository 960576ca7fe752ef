import { sql, type Kysely } from "kysely";
import { RECORDING_FUNCTIONS } from "./0008_job_records_v2.ts";

/**
 * Frozen in time. Jobs added by plain SQL (`graphile_worker.add_job`, another service's insert)
 * have no record until their first attempt ends. 0008's record_deleted_jobs wrote the records of
 * such jobs completed together one row at a time (a lookup and an insert_missing_record call per
 * job). Here the
 * whole completion batch's missing records are one insert, and only cron jobs still go through the
 * loop (note_cron_run, one upsert per cron job). The records are the same: insert_missing_record's
 * columns with phase 'succeeded'. One difference: a job counted in count_outcomes is one whose record
 * was inserted here (0008 counted every job it tried, a lost on-conflict race included). Measured
 * with track_functions on, fewer statements gave 3,600-4,300 jobs/s against ~2,700 for 20,000
 * SQL-added no-op jobs; uninstrumented (npm run drain-check) the gain was within the noise
 * (docs/BENCHMARKS.md, Analysis, 2026-12-03).
 */
const RECORD_DELETED_JOBS = `create or replace function observing_jobs.record_deleted_jobs() returns trigger
   language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
   declare
     done integer;
     missing integer;
     total integer;
     has_cron boolean;
     job graphile_worker._private_jobs;
   begin
     if current_setting('observing_jobs.recorded', true) = 'on' then return null; end if;
     update observing_jobs.job_records r
     set phase = 'succeeded', attempts = d.attempts, started_at = d.locked_at, finished_at = now(),
       worker_id = d.locked_by, updated_at = now()
     from deleted d
     where r.id = d.id and d.locked_at >= now() - interval '4 hours' and r.phase = 'waiting';
     get diagnostics done = row_count;
     select count(*) filter (where d.locked_at >= now() - interval '4 hours'),
       coalesce(bool_or(observing_jobs.is_cron(d.payload)), false)
     into total, has_cron from deleted d;
     -- Jobs nobody recorded at enqueue (plain SQL, graphile-worker's own cron): one insert for the batch.
     if done < total then
       insert into observing_jobs.job_records
         (id, task, queue, source, payload, phase, priority, attempts, max_attempts, job_key, run_at, last_error,
          created_at, started_at, finished_at, worker_id, updated_at)
       select d.id, t.identifier, q.queue_name,
         case when observing_jobs.is_cron(d.payload) then 'cron' else 'sql' end,
         observing_jobs.storable_payload(d.payload)::jsonb - '_trace',
         'succeeded', d.priority, d.attempts, d.max_attempts, d.key, d.run_at, d.last_error,
         d.created_at, d.locked_at, now(), d.locked_by, now()
       from deleted d
       join graphile_worker._private_tasks t on t.id = d.task_id
       left join graphile_worker._private_job_queues q on q.id = d.job_queue_id
       where d.locked_at >= now() - interval '4 hours'
         and not exists (select 1 from observing_jobs.job_records r where r.id = d.id)
       on conflict (id) do nothing;
       get diagnostics missing = row_count;
       done := done + missing;
     end if;
     -- Cron entries' last success (rare: most batches skip this).
     if has_cron then
       for job in select d.* from deleted d where d.locked_at >= now() - interval '4 hours' and observing_jobs.is_cron(d.payload) loop
         perform observing_jobs.note_cron_run(job, true);
       end loop;
     end if;
     if done > 0 then perform observing_jobs.count_outcomes(done, 0); end if;
     -- Removed by someone else while waiting (remove_job, complete_jobs, a stale lock's delete).
     with removed as (
       update observing_jobs.job_records r
       set phase = 'cancelled', finished_at = now(), updated_at = now()
       from deleted d
       where r.id = d.id and (d.locked_at is null or d.locked_at < now() - interval '4 hours') and r.phase in ('waiting', 'dead')
       returning r.id, r.task, r.queue, r.attempts
     )
     insert into observing_jobs.job_events (job_id, task, queue, event, attempt, actor, error)
     select id, task, queue, 'cancelled', attempts, 'sql', 'removed from graphile-worker outside observing-jobs (remove_job or complete_jobs)'
     from removed;
     return null;
   end $$`;

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql.raw(RECORD_DELETED_JOBS).execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  const previous = RECORDING_FUNCTIONS.find((statement) => statement.startsWith("create function observing_jobs.record_deleted_jobs()"));
  if (!previous) throw new Error("0020: 0008's record_deleted_jobs is missing");
  await sql.raw(previous.replace("create function", "create or replace function")).execute(db);
}
