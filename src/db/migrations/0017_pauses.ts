import { sql, type Kysely } from "kysely";

/**
 * Frozen in time. Pauses: an operator stops new attempts of a task, of a named queue or of a cap
 * group (src/worker/pause-gate.ts), and every instance honours it.
 *
 * - `pauses` holds what is paused now, with who paused it, when and why; `pause_events` keeps every
 *   pause and resume. Any change of `pauses` notifies `observing_jobs:pauses`, so every instance
 *   re-reads the table at once (they also poll it, for a notification lost across a reconnect).
 * - Every job carries flags naming its task and its named queue (`pause:task:<identifier>`,
 *   `pause:queue:<name>`), added by a BEFORE INSERT trigger on graphile-worker's jobs table however
 *   the job was added (the API, cron, fan-out, plain SQL `add_job`), next to the caller's own flags.
 *   A runner passes the flags of what is paused as graphile-worker's `forbiddenFlags`, and its fetch
 *   skips those jobs (`flags ?| $forbidden`): they wait in the table, unlocked, until the resume.
 *   The trigger also runs when a job's task or queue changes (a keyed re-enqueue's update sets
 *   both), and drops the pause flags the row had before.
 *
 * Flags by name, not by id. Ids would need no lookup, but a task or queue gets its id only with its
 * first job, so a runner would have to map a pause to ids that may not exist yet, and a job added
 * in between would carry an id its list lacks. With names the list a runner forbids is the pauses
 * table plus the task registry: nothing to resolve, no window. The lookup that names need (the
 * task's identifier, the queue's name) is cached per connection in a custom setting keyed by the
 * id: an id never changes its name (graphile-worker never renames a task or a queue, and a new
 * row gets a new id; only emptying its tables with RESTART IDENTITY under open connections could
 * reuse one), and reading a setting costs no query. Measured on 20,000-row add_jobs calls
 * (PostgreSQL 15, a shared 2-core machine, 3 rounds each, about 8.7 µs per row without any flags):
 * names looked up every time +9 to +14 µs per row, by id +3.5 µs, by name with this cache +4 to +6
 * µs (the queue's lookup included): about a tenth of the service's own cost of a job in a batch enqueue
 * (about 50 µs), and nothing next to a single HTTP enqueue (about 2.6 ms).
 *
 * Queued jobs are backfilled here (a no-op update of task_id fires the trigger).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create table observing_jobs.pauses (
      kind text not null check (kind in ('task', 'queue', 'group')),
      name text not null,
      paused_by text not null,
      reason text,
      paused_at timestamptz not null default now(),
      primary key (kind, name)
    )`.execute(db);
  await sql`
    create table observing_jobs.pause_events (
      id bigint generated always as identity primary key,
      kind text not null check (kind in ('task', 'queue', 'group')),
      name text not null,
      action text not null check (action in ('paused', 'resumed')),
      actor text not null,
      reason text,
      at timestamptz not null default now()
    )`.execute(db);
  await sql`create index pause_events_kind_name_idx on observing_jobs.pause_events (kind, name, id desc)`.execute(db);

  await sql`
    create function observing_jobs.notify_pauses_changed() returns trigger
    language plpgsql set search_path = pg_catalog, pg_temp as $$
    begin
      perform pg_notify('observing_jobs:pauses', '');
      return null;
    end $$`.execute(db);
  await sql`
    create trigger observing_jobs_pauses_changed after insert or update or delete or truncate on observing_jobs.pauses
    for each statement execute function observing_jobs.notify_pauses_changed()`.execute(db);

  await sql`
    create function observing_jobs.flag_job_for_pauses() returns trigger
    language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
    declare
      flags jsonb := coalesce(new.flags, '{}'::jsonb);
      task_flag text := current_setting('observing_jobs.pause_flag_t' || new.task_id, true);
      queue_flag text;
    begin
      if tg_op = 'UPDATE' then
        flags := flags - array(select key from jsonb_object_keys(flags) as key where key like 'pause:%');
      end if;
      if task_flag is null or task_flag = '' then
        select 'pause:task:' || t.identifier into task_flag from graphile_worker._private_tasks t where t.id = new.task_id;
        perform set_config('observing_jobs.pause_flag_t' || new.task_id, task_flag, false);
      end if;
      if new.job_queue_id is null then
        new.flags := flags || jsonb_build_object(task_flag, true);
        return new;
      end if;
      queue_flag := current_setting('observing_jobs.pause_flag_q' || new.job_queue_id, true);
      if queue_flag is null or queue_flag = '' then
        select 'pause:queue:' || q.queue_name into queue_flag from graphile_worker._private_job_queues q where q.id = new.job_queue_id;
        perform set_config('observing_jobs.pause_flag_q' || new.job_queue_id, queue_flag, false);
      end if;
      new.flags := flags || jsonb_build_object(task_flag, true, queue_flag, true);
      return new;
    end $$`.execute(db);
  await sql`
    create trigger observing_jobs_flag_for_pauses before insert or update of task_id, job_queue_id on graphile_worker._private_jobs
    for each row execute function observing_jobs.flag_job_for_pauses()`.execute(db);
  await sql`update graphile_worker._private_jobs set task_id = task_id`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop trigger if exists observing_jobs_flag_for_pauses on graphile_worker._private_jobs`.execute(db);
  await sql`drop function if exists observing_jobs.flag_job_for_pauses()`.execute(db);
  await sql`drop table if exists observing_jobs.pause_events`.execute(db);
  await sql`drop table if exists observing_jobs.pauses`.execute(db);
  await sql`drop function if exists observing_jobs.notify_pauses_changed()`.execute(db);
}
