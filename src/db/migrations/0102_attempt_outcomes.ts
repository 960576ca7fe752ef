import { sql, type Kysely } from "kysely";

/**
 * Frozen in time. Two more events in job history: `abandoned` (the attempt's worker pool was
 * declared dead while it ran; its outcome was discarded and the job ran elsewhere) and `deferred`
 * (an upstream asked to wait with Retry-After; the job waits until `run_at` with the attempt
 * given back).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`alter table observing_jobs.job_events drop constraint job_events_event_check`.execute(db);
  await sql`
    alter table observing_jobs.job_events add constraint job_events_event_check check (event in (
      'enqueued', 'started', 'succeeded', 'failed', 'exhausted', 'hook_failed',
      'retried', 'cancelled', 'discarded', 'rescued', 'abandoned', 'deferred'
    ))`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`alter table observing_jobs.job_events drop constraint job_events_event_check`.execute(db);
  await sql`
    alter table observing_jobs.job_events add constraint job_events_event_check check (event in (
      'enqueued', 'started', 'succeeded', 'failed', 'exhausted', 'hook_failed',
      'retried', 'cancelled', 'discarded', 'rescued'
    ))`.execute(db);
}
