import { sql, type Kysely } from "kysely";

/**
 * Frozen in time. Job records v2: the record of a job is kept right by graphile-worker's own
 * statements instead of by a buffered side channel.
 *
 * - The record is inserted in the same statement as `add_job` (src/enqueue.ts), as before.
 * - Triggers on graphile-worker's `_private_jobs` record the end of every attempt in the same
 *   statement, and so the same transaction, as graphile-worker's own change: a completion (the
 *   delete of a locked row) marks the record succeeded, a failure (the unlock that moves run_at)
 *   marks it waiting or dead, a removal by anyone else (remove_job, complete_jobs) marks it
 *   cancelled. Whatever crashes when, the record and graphile-worker agree once the statement commits.
 *   This is the one place the service relies on graphile-worker's private table, for a reason no
 *   public interface meets (no hook runs in graphile-worker's completion transaction);
 *   test/lifecycle/private-jobs-contract.test.ts pins the columns and statements relied on.
 * - "running" is no longer written: it is read from graphile-worker's `jobs` view (locked_at).
 * - No index on job_records covers a column that the end of an attempt changes (phase, attempts,
 *   started_at, finished_at, last_error, worker_id), so that update is HOT (no index entries, no
 *   dead index tuples); fillfactor leaves room on each page for it. Listings by state read the
 *   live states from graphile-worker's view and the rare end states from job_events.
 * - Outcome counts per minute (the dashboard's chart) and each cron entry's last run and last
 *   success (cron freshness) are kept in small tables of their own, which retention never prunes.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`alter table observing_jobs.job_records add column enqueued_by text, add column worker_id text`.execute(db);

  // v1 wrote "running" and could lose the buffered end of an attempt; settle those records from
  // graphile-worker's truth: a job it no longer has succeeded (v1's own reading), one it has waits.
  await sql`
    update observing_jobs.job_records r
    set phase = case when exists (select 1 from graphile_worker.jobs j where j.id = r.id) then 'waiting' else 'succeeded' end,
      finished_at = case when exists (select 1 from graphile_worker.jobs j where j.id = r.id) then null else coalesce(r.finished_at, r.updated_at) end
    where r.phase in ('running', 'waiting')`.execute(db);
  await sql`
    update observing_jobs.job_records r set enqueued_by = e.actor
    from observing_jobs.job_events e
    where e.job_id = r.id and e.event = 'enqueued' and e.actor is not null`.execute(db);
  await sql`
    update observing_jobs.job_records r set worker_id = s.worker_id
    from (select distinct on (job_id) job_id, worker_id from observing_jobs.job_events
          where event = 'started' order by job_id, id desc) s
    where s.job_id = r.id`.execute(db);
  await sql`alter table observing_jobs.job_records drop constraint job_records_phase_check`.execute(db);
  await sql`
    alter table observing_jobs.job_records add constraint job_records_phase_check
    check (phase in ('waiting', 'succeeded', 'dead', 'cancelled', 'discarded'))`.execute(db);

  await sql`drop index observing_jobs.job_records_phase_id_idx`.execute(db);
  await sql`drop index observing_jobs.job_records_finished_at_idx`.execute(db);
  await sql`drop index observing_jobs.job_records_parent_id_idx`.execute(db);
  await sql`create index job_records_parent_id_idx on observing_jobs.job_records (parent_id) where parent_id is not null`.execute(db);
  await sql`create index job_records_queue_id_idx on observing_jobs.job_records (queue, id desc) where queue is not null`.execute(db);
  await sql`create index job_records_created_at_idx on observing_jobs.job_records (created_at)`.execute(db);
  // Half of each page is left for the one update a record gets when its job ends, so that update
  // stays on its page (HOT) even when a whole page of jobs ends in one statement, before pruning
  // can reclaim anything. The price is disk: records take twice the pages until retention.
  await sql`alter table observing_jobs.job_records set (fillfactor = 50)`.execute(db);

  await sql`alter table observing_jobs.job_events drop constraint job_events_event_check`.execute(db);
  await sql.raw(JOB_EVENTS_EVENT_CHECK).execute(db);
  await sql`drop index observing_jobs.job_events_outcome_at_idx`.execute(db);
  await sql`create index job_events_event_job_id_idx on observing_jobs.job_events (event, job_id desc)`.execute(db);
  await sql`create index job_events_at_idx on observing_jobs.job_events (at, event)`.execute(db);

  // Outcomes per minute, sharded so concurrent completions of many pools do not queue on one row.
  await sql`
    create table observing_jobs.job_outcome_counts (
      minute timestamptz not null,
      shard smallint not null,
      succeeded integer not null default 0,
      failed integer not null default 0,
      primary key (minute, shard)
    )`.execute(db);
  await sql`
    insert into observing_jobs.job_outcome_counts (minute, shard, succeeded, failed)
    select date_trunc('minute', at), 0, count(*) filter (where event = 'succeeded'), count(*) filter (where event = 'failed')
    from observing_jobs.job_events
    where event in ('succeeded', 'failed') and at > now() - interval '1 day'
    group by 1`.execute(db);

  // One row per crontab entry (task and payload without graphile-worker's `_cron`).
  await sql`
    create table observing_jobs.cron_runs (
      task text not null,
      payload jsonb not null,
      last_run_at timestamptz,
      last_run_job_id bigint,
      last_success_at timestamptz,
      last_success_job_id bigint,
      primary key (task, payload)
    )`.execute(db);
  await sql`
    insert into observing_jobs.cron_runs (task, payload, last_run_at, last_run_job_id, last_success_at, last_success_job_id)
    select task, payload - '_cron',
      max(created_at), max(id),
      max(finished_at) filter (where phase = 'succeeded'), max(id) filter (where phase = 'succeeded')
    from observing_jobs.job_records
    where source = 'cron' and payload is not null
    group by task, payload - '_cron'`.execute(db);

  for (const statement of RECORDING_FUNCTIONS) await sql.raw(statement).execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop trigger if exists observing_jobs_deleted on graphile_worker._private_jobs`.execute(db);
  await sql`drop trigger if exists observing_jobs_attempt_failed on graphile_worker._private_jobs`.execute(db);
  await sql`drop trigger if exists observing_jobs_dead_changed on graphile_worker._private_jobs`.execute(db);
  await sql`drop function if exists observing_jobs.record_deleted_jobs()`.execute(db);
  await sql`drop function if exists observing_jobs.record_failed_attempt()`.execute(db);
  await sql`drop function if exists observing_jobs.record_dead_changed()`.execute(db);
  await sql`drop function if exists observing_jobs.insert_missing_record(graphile_worker._private_jobs, text)`.execute(db);
  await sql`drop function if exists observing_jobs.is_cron(json)`.execute(db);
  await sql`drop function if exists observing_jobs.storable_payload(json)`.execute(db);
  await sql`drop function if exists observing_jobs.count_outcomes(integer, integer)`.execute(db);
  await sql`drop function if exists observing_jobs.note_cron_run(graphile_worker._private_jobs, boolean)`.execute(db);
  await sql`drop table observing_jobs.cron_runs`.execute(db);
  await sql`drop table observing_jobs.job_outcome_counts`.execute(db);
  await sql`drop index observing_jobs.job_events_at_idx`.execute(db);
  await sql`drop index observing_jobs.job_events_event_job_id_idx`.execute(db);
  await sql`
    create index job_events_outcome_at_idx on observing_jobs.job_events (at, event)
    where event in ('succeeded', 'failed')`.execute(db);
  // 0002's events again (this down once left `abandoned` allowed). Like 0012's down, it fails
  // while job_events holds an event that only the newer list allows.
  await sql`alter table observing_jobs.job_events drop constraint job_events_event_check`.execute(db);
  await sql`
    alter table observing_jobs.job_events add constraint job_events_event_check check (event in (
      'enqueued', 'started', 'succeeded', 'failed', 'exhausted', 'hook_failed',
      'retried', 'cancelled', 'discarded', 'rescued'
    ))`.execute(db);
  await sql`alter table observing_jobs.job_records reset (fillfactor)`.execute(db);
  await sql`drop index observing_jobs.job_records_created_at_idx`.execute(db);
  await sql`drop index observing_jobs.job_records_queue_id_idx`.execute(db);
  await sql`drop index observing_jobs.job_records_parent_id_idx`.execute(db);
  await sql`create index job_records_parent_id_idx on observing_jobs.job_records (parent_id, phase) where parent_id is not null`.execute(db);
  await sql`create index job_records_finished_at_idx on observing_jobs.job_records (finished_at) where finished_at is not null`.execute(db);
  await sql`create index job_records_phase_id_idx on observing_jobs.job_records (phase, id desc)`.execute(db);
  await sql`alter table observing_jobs.job_records drop constraint job_records_phase_check`.execute(db);
  await sql`
    alter table observing_jobs.job_records add constraint job_records_phase_check
    check (phase in ('waiting', 'running', 'succeeded', 'dead', 'cancelled', 'discarded'))`.execute(db);
  await sql`alter table observing_jobs.job_records drop column enqueued_by, drop column worker_id`.execute(db);
}

/** job_events' events from here on: 0002's and `abandoned`. Exported for 0012_attempt_outcomes, whose down restores it. */
export const JOB_EVENTS_EVENT_CHECK = `
    alter table observing_jobs.job_events add constraint job_events_event_check check (event in (
      'enqueued', 'started', 'succeeded', 'failed', 'exhausted', 'hook_failed',
      'retried', 'cancelled', 'discarded', 'rescued', 'abandoned'
    ))`;

/**
 * The functions and triggers that keep records right. They run inside graphile-worker's own
 * statements, so they must never fail: text that jsonb or text columns refuse is made storable
 * (NUL removed) and a payload that still cannot be stored is kept as null, never an error.
 *
 * Our own operator actions (cancel, discard, retry, prune) record themselves in their transaction
 * and set `observing_jobs.recorded` locally so the triggers leave their rows alone.
 *
 * Exported for 0012_attempt_outcomes, 0019_deferral_not_a_failure and 0020_missing_records_in_one_statement,
 * which change storable_payload, record_failed_attempt and record_deleted_jobs and whose downs restore them.
 */
export const RECORDING_FUNCTIONS = [
  `create function observing_jobs.storable_payload(payload json) returns jsonb
   language plpgsql immutable set search_path = pg_catalog, pg_temp as $$
   begin
     return payload::jsonb;
   exception when others then
     begin
       -- jsonb refuses the \\u0000 escape that json accepts: drop it (an escaped backslash before
       -- "u0000" is rare enough that losing its pair is acceptable in a history copy).
       return replace(payload::text, '\\u0000', '')::jsonb;
     exception when others then
       return null;
     end;
   end $$`,

  // Whether graphile-worker's cron fired the job. A text search first: most payloads are not, and
  // json operators would refuse a payload holding \u0000 (which json accepts and jsonb does not).
  `create function observing_jobs.is_cron(payload json) returns boolean
   language sql immutable set search_path = pg_catalog, pg_temp as $$
     select strpos(payload::text, '"_cron"') > 0 and coalesce(observing_jobs.storable_payload(payload) ? '_cron', false)
   $$`,

  `create function observing_jobs.count_outcomes(succeeded integer, failed integer) returns void
   language sql security definer set search_path = pg_catalog, pg_temp as $$
     insert into observing_jobs.job_outcome_counts as c (minute, shard, succeeded, failed)
     values (date_trunc('minute', now()), pg_backend_pid() % 8, succeeded, failed)
     on conflict (minute, shard) do update set succeeded = c.succeeded + excluded.succeeded, failed = c.failed + excluded.failed
   $$`,

  `create function observing_jobs.note_cron_run(job graphile_worker._private_jobs, succeeded boolean) returns void
   language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
   declare
     entry jsonb := observing_jobs.storable_payload(job.payload);
   begin
     if entry is null then return; end if;
     entry := entry - '_cron' - '_trace';
     insert into observing_jobs.cron_runs as c (task, payload, last_run_at, last_run_job_id, last_success_at, last_success_job_id)
     select t.identifier, entry, job.created_at, job.id,
       case when succeeded then now() end, case when succeeded then job.id end
     from graphile_worker._private_tasks t where t.id = job.task_id
     on conflict (task, payload) do update set
       last_run_at = greatest(c.last_run_at, excluded.last_run_at),
       last_run_job_id = greatest(c.last_run_job_id, excluded.last_run_job_id),
       last_success_at = coalesce(greatest(c.last_success_at, excluded.last_success_at), c.last_success_at),
       last_success_job_id = coalesce(greatest(c.last_success_job_id, excluded.last_success_job_id), c.last_success_job_id);
   end $$`,

  // A job that never passed through the service's enqueue (plain SQL, graphile-worker's cron)
  // gets its record when its first attempt ends.
  `create function observing_jobs.insert_missing_record(job graphile_worker._private_jobs, phase text) returns void
   language sql security definer set search_path = pg_catalog, pg_temp as $$
     insert into observing_jobs.job_records
       (id, task, queue, source, payload, phase, priority, attempts, max_attempts, job_key, run_at, last_error,
        created_at, started_at, finished_at, worker_id, updated_at)
     select job.id, t.identifier, q.queue_name,
       case when observing_jobs.is_cron(job.payload) then 'cron' else 'sql' end,
       observing_jobs.storable_payload(job.payload)::jsonb - '_trace',
       phase, job.priority, job.attempts, job.max_attempts, job.key, job.run_at, job.last_error,
       job.created_at, job.locked_at, case when phase in ('waiting') then null else now() end, job.locked_by, now()
     from graphile_worker._private_tasks t
     left join graphile_worker._private_job_queues q on q.id = job.job_queue_id
     where t.id = job.task_id
     on conflict (id) do nothing
   $$`,

  // Deletes: a locked row deleted is a completed attempt (graphile-worker deletes a job only when
  // its handler succeeded; complete_jobs and remove_job leave locked jobs alone, unless the lock
  // is older than graphile-worker's four hours). Any other delete is a removal.
  `create function observing_jobs.record_deleted_jobs() returns trigger
   language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
   declare
     done integer;
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
     -- Jobs nobody recorded at enqueue, and cron entries' last success (both rare: most batches skip this).
     if done < total or has_cron then
       for job in select d.* from deleted d where d.locked_at >= now() - interval '4 hours' loop
         if not exists (select 1 from observing_jobs.job_records r where r.id = job.id) then
           perform observing_jobs.insert_missing_record(job, 'succeeded');
           done := done + 1;
         end if;
         if observing_jobs.is_cron(job.payload) then perform observing_jobs.note_cron_run(job, true); end if;
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
   end $$`,

  `create trigger observing_jobs_deleted after delete on graphile_worker._private_jobs
   referencing old table as deleted for each statement execute function observing_jobs.record_deleted_jobs()`,

  // A failed attempt: graphile-worker's failJob unlocks the row and moves run_at by its backoff
  // (a rescue's force_unlock_workers and a local queue's returnJobs unlock without moving run_at).
  settlingFunction({
    name: "record_failed_attempt",
    set: `last_error = new.last_error, run_at = new.run_at, started_at = old.locked_at,
       finished_at = case when dead then now() end, worker_id = old.locked_by, updated_at = now()`,
    where: "r.id = new.id and r.phase not in ('cancelled', 'discarded')",
    after: `
     if not found then
       perform observing_jobs.insert_missing_record(new, case when dead then 'dead' else 'waiting' end);
     end if;
     if dead then
       insert into observing_jobs.job_events (job_id, task, queue, event, attempt, error)
       select new.id, r.task, r.queue, 'exhausted', new.attempts, new.last_error
       from observing_jobs.job_records r where r.id = new.id;
     end if;
     if observing_jobs.is_cron(new.payload) then perform observing_jobs.note_cron_run(new, false); end if;
     perform observing_jobs.count_outcomes(0, 1);`,
  }),

  `create trigger observing_jobs_attempt_failed after update on graphile_worker._private_jobs
   for each row when (old.locked_at is not null and new.locked_at is null and new.run_at is distinct from old.run_at)
   execute function observing_jobs.record_failed_attempt()`,

  // A waiting job made dead, or a dead one given attempts again, by SQL from anywhere
  // (permanently_fail_jobs, remove_job of a running job, reschedule_jobs).
  settlingFunction({
    name: "record_dead_changed",
    set: `last_error = coalesce(new.last_error, r.last_error), run_at = new.run_at,
       finished_at = case when dead then now() end, updated_at = now()`,
    where: "r.id = new.id and r.phase in ('waiting', 'dead')",
    after: `
     if dead and found then
       insert into observing_jobs.job_events (job_id, task, queue, event, attempt, actor, error)
       select new.id, r.task, r.queue, 'exhausted', new.attempts, 'sql', new.last_error
       from observing_jobs.job_records r where r.id = new.id;
     end if;`,
  }),

  `create trigger observing_jobs_dead_changed after update on graphile_worker._private_jobs
   for each row when (old.locked_at is null and new.locked_at is null
     and (old.attempts >= old.max_attempts) is distinct from (new.attempts >= new.max_attempts))
   execute function observing_jobs.record_dead_changed()`,
];

/**
 * record_failed_attempt and record_dead_changed, which share their start: a row trigger on
 * graphile-worker's jobs that, unless our own action recorded the change, makes the job's record
 * dead (attempts used up) or waiting. What else the update sets, which records it may touch and
 * what follows it are each function's own.
 */
function settlingFunction(parts: { name: string; set: string; where: string; after: string }): string {
  return `create function observing_jobs.${parts.name}() returns trigger
   language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
   declare
     dead boolean := new.attempts >= new.max_attempts;
   begin
     if current_setting('observing_jobs.recorded', true) = 'on' then return null; end if;
     update observing_jobs.job_records r
     set phase = case when dead then 'dead' else 'waiting' end, attempts = new.attempts, max_attempts = new.max_attempts,
       ${parts.set}
     where ${parts.where};${parts.after}
     return null;
   end $$`;
}
