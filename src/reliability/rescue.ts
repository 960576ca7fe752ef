/**
 * Releasing jobs whose worker pool can no longer finish them, with a trace in job history: one
 * `rescued` event per job and its record back to `waiting`, in the same transaction as graphile-
 * worker's public `force_unlock_workers`. The history of the next attempt therefore always follows
 * the rescue. Used by the sweeper (pools that died) and by shutdown (this process's own pools).
 */
import { sql } from "kysely";
import type { Db } from "../db/database.ts";

/** A job locked by a pool, as the public `jobs` view shows it. */
export interface LockedJob {
  id: string;
  task: string;
  queue: string | null;
  poolId: string;
  attempts: number;
}

export interface RescueOptions {
  /** Who released the jobs: "sweeper" or "shutdown". */
  actor: string;
  /** Why, per job (stored as the event's error). */
  reason: (job: LockedJob) => string;
  /**
   * Jobs whose interrupted attempt does not count (id → when the job was due): they get the attempt
   * back and their old run_at, so they keep their place in the queue (graphile-worker's own failure
   * path would have added a backoff delay and sent them to the back).
   */
  giveBackAttempt?: ReadonlyMap<string, Date>;
}

/**
 * The jobs to release: those locked by these pools, plus interrupted jobs (id → the pool that ran
 * them) that graphile-worker has already unlocked and nobody has picked up again. Read outside any
 * transaction, as graphile-worker advises for its view. Scans the jobs table, so callers only ask
 * about pools that are gone.
 */
export async function findJobsToRelease(db: Db, poolIds: readonly string[], interrupted: ReadonlyMap<string, string> = new Map()): Promise<LockedJob[]> {
  if (poolIds.length === 0 && interrupted.size === 0) return [];
  const rows = await db
    .selectFrom("graphile_worker.jobs")
    .select(["id", "task_identifier", "queue_name", "locked_by", "attempts"])
    .where((eb) =>
      eb.or([
        ...(poolIds.length > 0 ? [eb("locked_by", "in", [...poolIds])] : []),
        ...(interrupted.size > 0 ? [eb.and([eb("id", "in", [...interrupted.keys()]), eb("locked_by", "is", null)])] : []),
      ]),
    )
    .execute();
  return rows.map((row) => ({
    id: String(row.id),
    task: row.task_identifier,
    queue: row.queue_name,
    poolId: row.locked_by ?? interrupted.get(String(row.id))!,
    attempts: row.attempts,
  }));
}

/** Inside the caller's transaction: history first, then the unlock, so both commit together. */
export async function releaseJobs(trx: Db, poolIds: readonly string[], jobs: readonly LockedJob[], options: RescueOptions): Promise<void> {
  if (jobs.length > 0) {
    const column = <K extends keyof LockedJob>(key: K) => jobs.map((job) => job[key]);
    await sql`
      insert into observing_jobs.job_events (job_id, task, queue, event, attempt, worker_id, actor, error)
      select id, task, queue, 'rescued', attempts, pool_id, ${options.actor}, reason
      from unnest(${column("id")}::bigint[], ${column("task")}::text[], ${column("queue")}::text[], ${column("attempts")}::int[],
                  ${column("poolId")}::text[], ${jobs.map((job) => options.reason(job))}::text[])
        as j(id, task, queue, attempts, pool_id, reason)`.execute(trx);
    // A job added by plain SQL may have no record yet; its next start creates one.
    await trx
      .updateTable("observing_jobs.job_records")
      .set({ phase: "waiting", updated_at: new Date() })
      .where("id", "in", jobs.map((job) => job.id))
      .where("phase", "=", "running")
      .execute();
  }
  if (poolIds.length > 0) await sql`select graphile_worker.force_unlock_workers(${[...poolIds]}::text[])`.execute(trx);
  for (const job of jobs) {
    const runAt = options.giveBackAttempt?.get(job.id);
    if (runAt && job.attempts > 0) await giveBackAttempt(trx, job, runAt);
  }
  // Wakes every listening pool when the transaction commits (graphile-worker's own channel), so a
  // released job runs at once instead of at some pool's next poll.
  if (jobs.length > 0) await sql`select pg_notify('jobs:insert', json_build_object('count', ${jobs.length}::int)::text)`.execute(trx);
}

/**
 * A job interrupted by this process's shutdown gets its attempt back and its old run_at.
 * graphile-worker's `reschedule_jobs` leaves locked jobs alone, so a job another instance already
 * runs is not touched.
 */
async function giveBackAttempt(trx: Db, job: Pick<LockedJob, "id" | "attempts">, runAt: Date): Promise<void> {
  const attempts = job.attempts - 1;
  await sql`select id from graphile_worker.reschedule_jobs(array[${job.id}]::bigint[], run_at => ${runAt}::timestamptz, attempts => ${attempts}::int)`.execute(trx);
  await trx.updateTable("observing_jobs.job_records").set({ attempts }).where("id", "=", job.id).execute();
}
