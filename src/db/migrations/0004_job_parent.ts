import { sql, type Kysely } from "kysely";

/**
 * Frozen in time. A job enqueued by another job (fan-out: a sweep's batches, a kingdom backfill's
 * batches) records its parent, so the parent's progress can be told and its pending batches cancelled.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`alter table observing_jobs.job_records add column parent_id bigint`.execute(db);
  await sql`create index job_records_parent_id_idx on observing_jobs.job_records (parent_id, phase) where parent_id is not null`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`alter table observing_jobs.job_records drop column parent_id`.execute(db);
}
