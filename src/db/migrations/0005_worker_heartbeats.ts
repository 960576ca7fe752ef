import { sql, type Kysely } from "kysely";

/**
 * Frozen in time. One row per graphile-worker pool (its id is what `locked_by` holds on the jobs
 * it runs): who runs it and when it last said it was alive. The sweeper compares `last_seen` with
 * the database's clock only, so the instances' clocks never matter.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create table observing_jobs.worker_heartbeats (
      pool_id text primary key,
      -- The service process that runs the pool (one per start), its Cloud Run revision, host and pid.
      instance_id text not null,
      revision text,
      hostname text not null,
      pid integer not null,
      -- The runner the pool belongs to: "main" or a concurrency-cap group.
      runner text not null,
      started_at timestamptz not null default now(),
      last_seen timestamptz not null default now(),
      -- live: beating; stopped: shut down cleanly, holds no jobs; dead: stopped beating, its jobs were released.
      status text not null default 'live' check (status in ('live', 'stopped', 'dead')),
      ended_at timestamptz
    )`.execute(db);
  // The sweeper's question: which live pools have gone quiet?
  await sql`create index worker_heartbeats_live_idx on observing_jobs.worker_heartbeats (last_seen) where status = 'live'`.execute(db);
  await sql`create index worker_heartbeats_ended_at_idx on observing_jobs.worker_heartbeats (ended_at) where ended_at is not null`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop table if exists observing_jobs.worker_heartbeats`.execute(db);
}
