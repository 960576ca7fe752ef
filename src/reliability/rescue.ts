/**
 * Releasing jobs whose worker pool can no longer finish them, with a trace in job history: one
 * `rescued` event per job, in the same transaction as graphile-worker's public `force_unlock_workers`. The history of the next attempt therefore always follows
 * the rescue. Used by the sweeper (pools that died) and by shutdown (this process's own pools).
 */
import { sql } from "kysely";
import type { Db } from "../db/database.ts";
import { insertEvents } from "../db/repositories/job-records.ts";

/** A job locked by a pool, as the public `jobs` view shows it. */
export interface LockedJob {
  id: string;
  task: string;
  queue: string | null;
  poolId: string;
  attempts: number;
  /** When its attempt took the lock (null once graphile-worker has unlocked it). */
  lockedAt: Date | null;
}

export interface RescueOptions {
  /** Who released the jobs: "sweeper" or "shutdown". */
  actor: string;
  /** Why, per job (stored as the event's error). */
  reason: (job: LockedJob) => string;
  /**
   * Jobs whose attempt does not count (id → when the job was due, or null to leave its run_at): they
   * get the attempt back and their old run_at, so they keep their place in the queue (graphile-
   * worker's own failure path would have added a backoff delay and sent them to the back).
   */
  giveBackAttempt?: ReadonlyMap<string, Date | null>;
  /** When interrupted attempts started (this process knows; graphile-worker has unlocked them). */
  startedAt?: ReadonlyMap<string, Date>;
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
    .select(["id", "task_identifier", "queue_name", "locked_by", "attempts", "locked_at"])
    .where((eb) =>
      eb.or([
        ...(poolIds.length > 0 ? [sql<boolean>`locked_by = any(${[...poolIds]}::text[])`] : []),
        ...(interrupted.size > 0 ? [eb.and([sql<boolean>`id = any(${[...interrupted.keys()]}::bigint[])`, eb("locked_by", "is", null)])] : []),
      ]),
    )
    .execute();
  return rows.map((row) => ({
    id: String(row.id),
    task: row.task_identifier,
    queue: row.queue_name,
    poolId: row.locked_by ?? interrupted.get(String(row.id))!,
    attempts: row.attempts,
    lockedAt: row.locked_at,
  }));
}

/**
 * Inside the caller's transaction: the `rescued` events, then the unlock, so both commit together.
 * The records need no change: a locked job's record waits (graphile-worker's lock says it runs),
 * and giving an attempt back to a job that its interruption made dead brings its record back to
 * waiting through the recording trigger (migration 0008).
 */
export async function releaseJobs(trx: Db, poolIds: readonly string[], jobs: readonly LockedJob[], options: RescueOptions): Promise<void> {
  // The event says how long the attempt had run, so the timeline shows when it started.
  const at = new Date();
  await insertEvents(
    trx,
    jobs.map((job) => {
      const started = options.startedAt?.get(job.id) ?? job.lockedAt;
      return {
        jobId: job.id,
        task: job.task,
        queue: job.queue,
        event: "rescued" as const,
        attempt: job.attempts,
        workerId: job.poolId,
        actor: options.actor,
        error: options.reason(job),
        durationMs: started ? Math.max(0, at.getTime() - started.getTime()) : null,
        at,
      };
    }),
  );
  if (poolIds.length > 0) await sql`select graphile_worker.force_unlock_workers(${[...poolIds]}::text[])`.execute(trx);
  const giveBack = options.giveBackAttempt;
  if (giveBack) await giveBackAttempts(trx, jobs.filter((job) => giveBack.has(job.id) && job.attempts > 0), giveBack);
  // Wakes every listening pool when the transaction commits (graphile-worker's own channel), so a
  // released job runs at once instead of at some pool's next poll.
  if (jobs.length > 0) await sql`select pg_notify('jobs:insert', json_build_object('count', ${jobs.length}::int)::text)`.execute(trx);
}

/**
 * Released jobs whose attempt does not count get it back (and their old run_at, when given).
 * graphile-worker's `reschedule_jobs` takes one attempts value and one run_at per call, and leaves
 * locked jobs alone (a job another instance already runs is not touched): one call per distinct
 * pair, a handful however many jobs (a local queue's worth of jobs all had the same attempt).
 */
async function giveBackAttempts(trx: Db, jobs: ReadonlyArray<Pick<LockedJob, "id" | "attempts">>, runAts: ReadonlyMap<string, Date | null>): Promise<void> {
  const groups = new Map<string, { attempts: number; runAt: Date | null; ids: string[] }>();
  for (const job of jobs) {
    const runAt = runAts.get(job.id) ?? null;
    const key = `${job.attempts}|${runAt?.toISOString() ?? ""}`;
    const group = groups.get(key) ?? { attempts: job.attempts - 1, runAt, ids: [] };
    group.ids.push(job.id);
    groups.set(key, group);
  }
  for (const { attempts, runAt, ids } of groups.values()) {
    // Only the jobs reschedule_jobs changed (one another pool locked meanwhile is left alone), and
    // only while they still had the attempts read before the transaction.
    const { rows } = await sql<{ id: string }>`
      select id::text from graphile_worker.reschedule_jobs(
        array(select id from graphile_worker.jobs where id = any(${ids}::bigint[]) and attempts = ${attempts + 1}::int),
        run_at => ${runAt}::timestamptz, attempts => ${attempts}::int)`.execute(trx);
    if (rows.length === 0) continue;
    await trx
      .updateTable("observing_jobs.job_records")
      .set({ attempts, ...(runAt ? { run_at: runAt } : {}) })
      .where(sql<boolean>`id = any(${rows.map((row) => row.id)}::bigint[])`)
      .where("phase", "=", "waiting")
      .execute();
  }
}
