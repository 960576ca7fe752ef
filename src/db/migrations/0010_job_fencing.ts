import { sql, type Kysely } from "kysely";

/**
 * Frozen in time. Fences graphile-worker's own statements so that a worker pool declared dead
 * (its jobs released to other pools) can never change the queue afterwards, even in the moment
 * before it learns of its death.
 *
 * graphile-worker fences its failure and return paths by `locked_by`, but its completion deletes
 * the job by id alone, and its fetch does not know whether the pool is still alive. Those
 * statements carry no pool id we could check, so the connections say who they are instead: each
 * runner of this service opens its own pool whose connections have the application_name
 * `observing-jobs runner <token>`, and the pool's heartbeat row records that name. For those
 * connections only:
 *
 * - a delete of a job (graphile-worker's completion) goes ahead only when the job is locked by the
 *   pool whose heartbeat row carries this session name. Otherwise the job was released and maybe
 *   re-locked by another pool: the delete is skipped (a no-op for the statement) and recorded in
 *   `fenced_completions`;
 * - taking a job's or a named queue's lock (graphile-worker's fetch) goes ahead only for a live pool
 *   of this session. A pool declared dead therefore fetches nothing.
 *
 * Connections of anyone else (the service's own queries, the CLI, other services, graphile-worker's
 * runOnce) are not affected: the WHEN clauses compare one setting and skip the function.
 *
 * Cost: one primary-key lookup in worker_heartbeats per completed job and per fetched job, inside
 * the statement graphile-worker runs anyway (no extra round trip); see docs/operations.md.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`alter table observing_jobs.worker_heartbeats add column session_name text`.execute(db);
  await sql`
    create table observing_jobs.fenced_completions (
      id bigint generated always as identity primary key,
      job_id bigint not null,
      attempt integer not null,
      -- The pool whose completion was refused (from the session), and who held the job then (null: nobody).
      pool_id text,
      held_by text,
      at timestamptz not null default now()
    )`.execute(db);
  await sql`create index fenced_completions_job_id_idx on observing_jobs.fenced_completions (job_id)`.execute(db);

  await sql.raw(FENCE_RUNNER_COMPLETION).execute(db);
  await sql.raw(FENCE_RUNNER_LOCK).execute(db);

  for (const trigger of fenceTriggers()) await sql.raw(trigger).execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const table of LOCKED_TABLES.toReversed()) {
    await sql.raw(`drop trigger if exists observing_jobs_fence_lock on graphile_worker.${table}`).execute(db);
  }
  await sql`drop trigger if exists observing_jobs_fence_completion on graphile_worker._private_jobs`.execute(db);
  await sql`drop function if exists observing_jobs.fence_runner_lock()`.execute(db);
  await sql`drop function if exists observing_jobs.fence_runner_completion()`.execute(db);
  await sql`drop table if exists observing_jobs.fenced_completions`.execute(db);
  await sql`alter table observing_jobs.worker_heartbeats drop column if exists session_name`.execute(db);
}

/** graphile-worker's tables whose rows a fetch locks (`locked_by`): a job and its named queue. Exported for 0022_fences_checked_once. */
export const LOCKED_TABLES = ["_private_jobs", "_private_job_queues"];

/**
 * The fetch fence: a job's or a queue's lock goes ahead only for a live pool of this session.
 * Exported for 0015_fence_waits_for_sweeper, which changes it and whose down restores this version.
 */
export const FENCE_RUNNER_LOCK = `
    create function observing_jobs.fence_runner_lock() returns trigger language plpgsql as $$
    begin
      if exists (
        select 1 from observing_jobs.worker_heartbeats h
        where h.pool_id = new.locked_by and h.session_name = current_setting('application_name') and h.status = 'live'
      ) then
        return new;
      end if;
      return null;
    end
    $$`;

/**
 * The completion fence: a runner's delete of a job goes ahead only while the job is locked by the
 * pool of this session. Exported for 0022_fences_checked_once, whose down restores this version.
 */
export const FENCE_RUNNER_COMPLETION = `
    create function observing_jobs.fence_runner_completion() returns trigger language plpgsql as $$
    declare
      session text := current_setting('application_name');
    begin
      if old.locked_by is not null and exists (
        select 1 from observing_jobs.worker_heartbeats h where h.pool_id = old.locked_by and h.session_name = session
      ) then
        return old;
      end if;
      insert into observing_jobs.fenced_completions (job_id, attempt, pool_id, held_by)
      values (old.id, old.attempts, (select h.pool_id from observing_jobs.worker_heartbeats h where h.session_name = session limit 1), old.locked_by);
      return null;
    end
    $$`;

/** Who the fences apply to: a runner's connections (src/worker/job-control.ts names them). */
const RUNNER_SESSION = "starts_with(current_setting('application_name'), 'observing-jobs runner ')";

/** The fences' triggers, on the completion and on both locks. Exported for 0022_fences_checked_once, whose down restores them. */
export function fenceTriggers(): string[] {
  return [
    `
    create trigger observing_jobs_fence_completion before delete on graphile_worker._private_jobs
    for each row when (${RUNNER_SESSION}) execute function observing_jobs.fence_runner_completion()`,
    // The same fence on a job's lock and on a named queue's: graphile-worker's fetch takes both.
    ...LOCKED_TABLES.map(
      (table) => `
    create trigger observing_jobs_fence_lock before update of locked_by on graphile_worker.${table}
    for each row when (new.locked_by is not null and new.locked_by is distinct from old.locked_by and ${RUNNER_SESSION})
    execute function observing_jobs.fence_runner_lock()`,
    ),
  ];
}
