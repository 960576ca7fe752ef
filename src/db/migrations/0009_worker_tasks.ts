import { sql, type Kysely } from "kysely";

/**
 * Frozen in time. The task names each worker pool serves, so that `observing-jobs add` can tell
 * when no running instance knows a task (a new task file the running service has not loaded).
 * Null for pools of instances from before this migration.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`alter table observing_jobs.worker_heartbeats add column tasks text[]`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`alter table observing_jobs.worker_heartbeats drop column if exists tasks`.execute(db);
}
