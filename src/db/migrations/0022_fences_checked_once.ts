import { sql, type Kysely } from "kysely";
import { FENCE_RUNNER_COMPLETION, fenceTriggers } from "./0010_job_fencing.ts";
import { fenceRunnerLock } from "./0015_fence_waits_for_sweeper.ts";

/**
 * Frozen in time. The fences of 0010 and 0015 called a plpgsql function for every row a runner
 * fetched or completed, each looking up the pool's heartbeat row: measured in a drain of 20,000
 * jobs, ~6 µs per job fetched and ~5 µs per job completed. Within one transaction the answer does
 * not change, so each fence now remembers it for the rest of the transaction, in a
 * transaction-local setting (gone at commit or rollback), and the trigger's WHEN lets the
 * transaction's other rows of the same pool go without the call:
 *
 * - The fetch fence asks whether this session's pool is live, and holds its heartbeat row FOR SHARE
 *   until the fetch commits (0015): the sweeper's update of that row waits for the lock, so the pool
 *   stays live until the transaction ends. `observing_jobs.live_pool` remembers it, and the rest of
 *   the fetch (the batch's other jobs, their named queues) is locked without the call.
 * - The completion fence asks whether the job is still locked by this session's pool (a session's
 *   pool never changes). `observing_jobs.fenced_pool` remembers the pool once a row has passed, and
 *   the batch's other jobs locked by it are deleted without the call (graphile-worker completes a
 *   batch in one statement, or two when it mixes jobs with and without a named queue).
 *
 * What is remembered is the session's name with the pool, and the WHEN lets a row through only when
 * both are equal to it: a row locked by anyone else, or by nobody (released by the sweeper; a null
 * compares as unknown, which calls the function), on a connection that has remembered nothing yet,
 * or after application_name changed, still calls the function and is refused (and a completion
 * recorded) as before. Transaction-local rather than for the session:
 * behind PgBouncer in transaction mode one server connection serves many clients in turn, each with
 * its own application_name, and a session setting would carry one runner's pool over to the next
 * (a stale completion let through, found in review). Anyone who can set these settings on a runner's
 * connection can pass the fences, as anyone can name a connection as a runner's: the fences stop the
 * service's own stale pools, not a hostile client with database access.
 */
const FENCE_RUNNER_COMPLETION_REMEMBERED = `
    create or replace function observing_jobs.fence_runner_completion() returns trigger language plpgsql as $$
    declare
      session text := current_setting('application_name');
    begin
      if old.locked_by is not null and exists (
        select 1 from observing_jobs.worker_heartbeats h where h.pool_id = old.locked_by and h.session_name = session
      ) then
        -- This session's pool: the trigger's WHEN lets the transaction's other jobs it holds through.
        perform set_config('observing_jobs.fenced_pool', session || ' ' || old.locked_by, true);
        return old;
      end if;
      insert into observing_jobs.fenced_completions (job_id, attempt, pool_id, held_by)
      values (old.id, old.attempts, (select h.pool_id from observing_jobs.worker_heartbeats h where h.session_name = session limit 1), old.locked_by);
      return null;
    end
    $$`;

const FENCE_RUNNER_LOCK_REMEMBERED = `
    create or replace function observing_jobs.fence_runner_lock() returns trigger language plpgsql as $$
    begin
      if exists (
        select 1 from observing_jobs.worker_heartbeats h
        where h.pool_id = new.locked_by and h.session_name = current_setting('application_name') and h.status = 'live'
        for share
      ) then
        -- Live until this transaction ends (its heartbeat row is held): the trigger's WHEN lets its other locks through.
        perform set_config('observing_jobs.live_pool', current_setting('application_name') || ' ' || new.locked_by, true);
        return new;
      end if;
      return null;
    end
    $$`;

/** 0010's triggers, each with the condition that skips the call once the answer is known. */
const REMEMBERING_CONDITIONS: Array<[trigger: string, before: string, after: string]> = [
  [
    "observing_jobs_fence_completion",
    "for each row when (starts_with(current_setting('application_name'), 'observing-jobs runner '))",
    "for each row when (starts_with(current_setting('application_name'), 'observing-jobs runner ')\n      and not coalesce(current_setting('application_name') || ' ' || old.locked_by = current_setting('observing_jobs.fenced_pool', true), false))",
  ],
  [
    "observing_jobs_fence_lock",
    "and starts_with(current_setting('application_name'), 'observing-jobs runner '))",
    "and starts_with(current_setting('application_name'), 'observing-jobs runner ')\n      and not coalesce(current_setting('application_name') || ' ' || new.locked_by = current_setting('observing_jobs.live_pool', true), false))",
  ],
];

function rememberingTriggers(): string[] {
  return fenceTriggers().map((trigger) => {
    const change = REMEMBERING_CONDITIONS.find(([name]) => trigger.includes(`create trigger ${name} `));
    if (!change || !trigger.includes(change[1])) throw new Error(`0022: 0010's fence trigger is not the one this migration changes: ${trigger.trim()}`);
    return trigger.replace(change[1], change[2]);
  });
}

async function replaceTriggers(db: Kysely<unknown>, triggers: string[]): Promise<void> {
  for (const table of ["_private_jobs", "_private_job_queues"]) {
    await sql.raw(`drop trigger observing_jobs_fence_lock on graphile_worker.${table}`).execute(db);
  }
  await sql`drop trigger observing_jobs_fence_completion on graphile_worker._private_jobs`.execute(db);
  for (const trigger of triggers) await sql.raw(trigger).execute(db);
}

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql.raw(FENCE_RUNNER_COMPLETION_REMEMBERED).execute(db);
  await sql.raw(FENCE_RUNNER_LOCK_REMEMBERED).execute(db);
  await replaceTriggers(db, rememberingTriggers());
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await replaceTriggers(db, fenceTriggers());
  await sql.raw(FENCE_RUNNER_COMPLETION.replace("create function", "create or replace function")).execute(db);
  await sql.raw(fenceRunnerLock()).execute(db);
}
