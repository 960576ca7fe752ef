import { sql, type Kysely } from "kysely";

/**
 * Frozen in time. Each pool's heartbeat also says which jobs it was running (attempts begun and not
 * ended) at that beat. With a local queue, a pool holds locks on jobs it has fetched but not
 * started, and on jobs it has finished whose completion is not written yet; when the pool dies,
 * the sweeper gives those their attempt back (they never ran, or ran to the end) and lets only the
 * running ones spend theirs (the crash may be their own doing). Null: the pool's instance predates
 * this column, and every job it held counts as running.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`alter table observing_jobs.worker_heartbeats add column running_job_ids bigint[]`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`alter table observing_jobs.worker_heartbeats drop column if exists running_job_ids`.execute(db);
}
