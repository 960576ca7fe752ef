import { sql, type Kysely } from "kysely";

/**
 * Frozen in time. Concurrency caps that hold across every instance of the service.
 *
 * Each instance runs a capped group's tasks on a runner of its own with that many workers, so a cap
 * holds per instance; three instances would run three times the cap. For a global cap, each group
 * has `slots` rows in `global_cap_slots`, and the group runner's fetch takes one: a BEFORE trigger on
 * graphile-worker's fetch (the update that sets `locked_by`) claims a free slot for the job, or skips
 * the row when none is free, so the fetch returns nothing and the worker polls again later, as when
 * the queue is empty. The runner's connections say they are a global cap's (application_name
 * ending in " global-cap", src/worker/job-control.ts); the WHEN clause skips everyone else, so the
 * main runner, the API and other services pay nothing.
 *
 * A slot is taken while its job is locked by the pool that took it; nothing releases it. Whatever
 * ends the lock frees the slot with it: graphile-worker's completion (the row is deleted), its
 * failure or a give-back (the lock is cleared), the sweeper releasing a dead pool's jobs, an
 * operator's cancel. So the slots cannot leak and need no clean-up, and a SIGKILLed instance's
 * slots come back when the rescue releases its jobs. Checking a slot costs one primary-key lookup
 * of its job; a group has a handful of slots.
 *
 * Two instances fetching at once are serialised on the group's row in `global_caps` (FOR UPDATE,
 * held until the fetch commits), so the second sees the first's slot: every statement of a
 * plpgsql function takes a new snapshot under READ COMMITTED.
 *
 * A job in a named queue: graphile-worker's fetch locks the job's queue in the same statement
 * (a data-modifying CTE that runs after the jobs' update). When the job was skipped for want of a
 * slot, that queue lock must not happen either, or the queue would stay locked by a pool that runs
 * none of its jobs: the queue's trigger lets the lock through only when a slot of this pool holds a
 * job of that queue (the job trigger's slot is visible to it: a row-level trigger sees the effects
 * of the rows its statement already processed).
 *
 * A freed slot is found by the next fetch: the instance that freed it fetches again a moment after
 * the job ended (src/worker/global-cap-refetch.ts), the others at their next poll or new job.
 *
 * Every instance writes its groups and their limits at start (src/db/repositories/global-caps.ts);
 * the last one to start decides a limit that changed in a deploy. A lowered limit counts the jobs
 * still running in slots above it: nothing new starts until the group is under the new limit.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create table observing_jobs.global_caps (
      group_name text primary key,
      slots integer not null check (slots between 1 and 1000),
      updated_at timestamptz not null default now()
    )`.execute(db);
  await sql`
    create table observing_jobs.global_cap_slots (
      group_name text not null references observing_jobs.global_caps on delete cascade,
      slot integer not null check (slot >= 0),
      -- The job that holds the slot while graphile-worker has it locked by this pool; else free.
      job_id bigint,
      pool_id text,
      taken_at timestamptz,
      primary key (group_name, slot)
    )`.execute(db);

  await sql`
    create function observing_jobs.take_global_cap_slot() returns trigger language plpgsql as $$
    declare
      cap_group text;
      cap_slots integer;
      held integer;
      free_slot integer;
    begin
      select h.runner into cap_group from observing_jobs.worker_heartbeats h where h.pool_id = new.locked_by;
      select c.slots into cap_slots from observing_jobs.global_caps c where c.group_name = cap_group for update;
      -- A global cap's runner whose group the database does not hold (its row was deleted): nothing
      -- starts until an instance writes it again at its start; starting without a slot would break
      -- the cap and the named queues' serial order (the queue trigger below needs a slot).
      if cap_slots is null then
        raise warning 'observing-jobs: no global cap row for group %; the fetch takes nothing', cap_group;
        return null;
      end if;
      -- Slots held now, whatever their number: a limit just lowered still counts the jobs running in
      -- the slots above it until they end.
      select count(distinct s.job_id) into held
      from observing_jobs.global_cap_slots s
      where s.group_name = cap_group and s.job_id is not null and s.job_id <> new.id
        and exists (select 1 from graphile_worker._private_jobs j where j.id = s.job_id and j.locked_by = s.pool_id);
      if held >= cap_slots then
        return null;
      end if;
      select s.slot into free_slot
      from observing_jobs.global_cap_slots s
      where s.group_name = cap_group and s.slot < cap_slots
        and (
          s.job_id is null
          or s.job_id = new.id
          or not exists (select 1 from graphile_worker._private_jobs j where j.id = s.job_id and j.locked_by = s.pool_id)
        )
      -- A slot this job held before (fetched again by the same pool after a failure) first, so it is not counted twice.
      order by (s.job_id is not distinct from new.id) desc, s.slot
      limit 1;
      if free_slot is null then
        return null;
      end if;
      update observing_jobs.global_cap_slots
      set job_id = new.id, pool_id = new.locked_by, taken_at = now()
      where group_name = cap_group and slot = free_slot;
      -- Any other slot this job still names (one above a lowered limit, taken by an earlier attempt) is free now.
      update observing_jobs.global_cap_slots
      set job_id = null, pool_id = null, taken_at = null
      where group_name = cap_group and job_id = new.id and slot <> free_slot;
      return new;
    end
    $$`.execute(db);
  await sql`
    create function observing_jobs.lock_global_cap_queue() returns trigger language plpgsql as $$
    begin
      if exists (
        select 1
        from observing_jobs.global_cap_slots s
        join graphile_worker._private_jobs j on j.id = s.job_id
        where s.pool_id = new.locked_by and j.locked_by = new.locked_by and j.job_queue_id = new.id
      ) then
        return new;
      end if;
      return null;
    end
    $$`.execute(db);

  const globalCapSession = sql`(starts_with(current_setting('application_name'), 'observing-jobs runner ') and current_setting('application_name') like '% global-cap')`;
  // Named after 0010's fence triggers, so they run after them (same event: alphabetical order).
  for (const [table, claim] of CLAIMS) {
    await sql`
    create trigger observing_jobs_global_cap before update of locked_by on graphile_worker.${sql.raw(table)}
    for each row when (new.locked_by is not null and new.locked_by is distinct from old.locked_by and ${globalCapSession})
    execute function observing_jobs.${sql.raw(claim)}()`.execute(db);
  }
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const [table] of CLAIMS.toReversed()) {
    await sql.raw(`drop trigger if exists observing_jobs_global_cap on graphile_worker.${table}`).execute(db);
  }
  await sql`drop function if exists observing_jobs.lock_global_cap_queue()`.execute(db);
  await sql`drop function if exists observing_jobs.take_global_cap_slot()`.execute(db);
  await sql`drop table if exists observing_jobs.global_cap_slots`.execute(db);
  await sql`drop table if exists observing_jobs.global_caps`.execute(db);
}

/** graphile-worker's tables whose rows a fetch locks, and the function that lets a global cap's lock through. */
const CLAIMS = [
  ["_private_jobs", "take_global_cap_slot"],
  ["_private_job_queues", "lock_global_cap_queue"],
] as const;
