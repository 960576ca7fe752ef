import { sql, type Kysely } from "kysely";

/**
 * Frozen in time. The service's own record of every job's life, kept in its schema (never in
 * graphile-worker's private tables): an append-only event log, and one row per job summarising
 * its latest known state so listings by task, state and time use indexes instead of the log.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`create schema if not exists observing_jobs`.execute(db);
  await sql`
    create table observing_jobs.job_records (
      id bigint primary key,
      task text not null,
      queue text,
      -- How the job entered the queue: http, cli, cron, app, task or sql (first seen when it ran).
      source text not null,
      payload jsonb,
      -- waiting (queued, scheduled or retry-wait, told apart by run_at and attempts), running,
      -- succeeded, dead, cancelled or discarded.
      phase text not null check (phase in ('waiting', 'running', 'succeeded', 'dead', 'cancelled', 'discarded')),
      priority integer not null default 0,
      attempts integer not null default 0,
      max_attempts integer not null,
      job_key text,
      run_at timestamptz not null,
      last_error text,
      trace_id text,
      created_at timestamptz not null default now(),
      started_at timestamptz,
      finished_at timestamptz,
      updated_at timestamptz not null default now()
    )`.execute(db);
  await sql`create index job_records_task_id_idx on observing_jobs.job_records (task, id desc)`.execute(db);
  await sql`create index job_records_phase_id_idx on observing_jobs.job_records (phase, id desc)`.execute(db);
  await sql`create index job_records_finished_at_idx on observing_jobs.job_records (finished_at) where finished_at is not null`.execute(db);
  // Idempotency keys are looked up by job key, also after the job is done.
  await sql`create index job_records_job_key_idx on observing_jobs.job_records (job_key, id desc) where job_key is not null`.execute(db);

  await sql`
    create table observing_jobs.job_events (
      id bigint generated always as identity primary key,
      job_id bigint not null,
      task text not null,
      queue text,
      event text not null check (event in (
        'enqueued', 'started', 'succeeded', 'failed', 'exhausted', 'hook_failed',
        'retried', 'cancelled', 'discarded', 'rescued'
      )),
      attempt integer,
      -- enqueued: source; started: worker id; retried/cancelled/discarded: the operator.
      source text,
      worker_id text,
      actor text,
      error text,
      stack text,
      duration_ms double precision,
      -- enqueued: when it is due; failed: when the retry runs.
      run_at timestamptz,
      trace_id text,
      at timestamptz not null default now()
    )`.execute(db);
  await sql`create index job_events_job_id_idx on observing_jobs.job_events (job_id, id)`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop table if exists observing_jobs.job_events`.execute(db);
  await sql`drop table if exists observing_jobs.job_records`.execute(db);
}
