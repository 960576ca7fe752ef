import { sql, type Kysely } from "kysely";

/**
 * Frozen in time. 0010's fetch fence read the pool's heartbeat row without a lock, so a sweep that
 * declared the pool dead and ran force_unlock_workers between the fence's check and the fetch's
 * commit missed the rows being fetched: they stayed locked by a dead pool (nobody sweeps it again)
 * for graphile-worker's 4 hours. Now the fence holds the heartbeat row (FOR SHARE) until the fetch
 * commits: a sweep waits for it and then releases what it fetched, or the fetch waits for the
 * sweep and finds the pool dead.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create or replace function observing_jobs.fence_runner_lock() returns trigger language plpgsql as $$
    begin
      if exists (
        select 1 from observing_jobs.worker_heartbeats h
        where h.pool_id = new.locked_by and h.session_name = current_setting('application_name') and h.status = 'live'
        for share
      ) then
        return new;
      end if;
      return null;
    end
    $$`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    create or replace function observing_jobs.fence_runner_lock() returns trigger language plpgsql as $$
    begin
      if exists (
        select 1 from observing_jobs.worker_heartbeats h
        where h.pool_id = new.locked_by and h.session_name = current_setting('application_name') and h.status = 'live'
      ) then
        return new;
      end if;
      return null;
    end
    $$`.execute(db);
}
