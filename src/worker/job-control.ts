/**
 * The one module that writes graphile-worker's private tables directly (`_private_jobs`,
 * `_private_job_queues`). Everything else uses the public view and functions, as graphile-worker
 * asks. These statements exist because the public functions leave locked jobs alone
 * (`reschedule_jobs`, `permanently_fail_jobs`), and a running attempt's own job is locked:
 *
 * - failing a job permanently, before graphile-worker records the failure;
 * - deferring a job until an upstream's Retry-After, with its attempt given back;
 * - checking that a pool still holds a job (the fence of a stale success).
 *
 * Every statement is fenced by `locked_by`: it changes the job only while the calling pool holds
 * it, so a pool declared dead (its jobs released to others) changes nothing. graphile-worker's
 * completion is fenced by triggers instead (migration 0010_job_fencing), which recognise the
 * runners' connections by the session name made here. test/worker/job-control.test.ts pins each
 * assumption about graphile-worker's tables.
 */
import { randomBytes } from "node:crypto";
import { sql } from "kysely";
import type { Db } from "../db/database.ts";

/** Connections of a runner's pool carry `application_name = RUNNER_SESSION_PREFIX + token`; the fencing triggers look for it. */
export const RUNNER_SESSION_PREFIX = "observing-jobs runner ";

/** The end of a global cap runner's session name: its fetches take a slot of the cap (migration 0018_global_caps). */
export const GLOBAL_CAP_SESSION_SUFFIX = " global-cap";

/** A new runner session name (one per runner start, recorded with its pool's heartbeat). */
export function makeRunnerSessionName(globalCap = false): string {
  return `${RUNNER_SESSION_PREFIX}${randomBytes(8).toString("hex")}${globalCap ? GLOBAL_CAP_SESSION_SUFFIX : ""}`;
}

/** A job as the pool running it knows it. */
export interface HeldJob {
  id: string;
  /** The pool that locked it (graphile-worker's `locked_by`). */
  poolId: string;
}

/**
 * The job cannot succeed on a retry (missing configuration, an upstream's answer that will not
 * change): its max_attempts becomes its attempts, so graphile-worker's failure that follows makes
 * it dead at once, with this reason, instead of spending its other attempts. False when the pool
 * no longer holds the job (nothing changed).
 */
export async function failPermanently(db: Db, job: HeldJob, reason: string): Promise<boolean> {
  const { rows } = await sql<{ id: string }>`
    update graphile_worker._private_jobs
    set max_attempts = attempts, last_error = ${reason}
    where id = ${job.id}::bigint and locked_by = ${job.poolId}
    returning id`.execute(db);
  return rows.length > 0;
}

/**
 * Puts the job back in the queue due at `runAt`, with the attempt that just ended given back (an
 * upstream asked us to wait: not the job's fault), and unlocks its named queue. graphile-worker's
 * own failure statement that follows finds the job no longer locked by the pool and changes
 * nothing. False when the pool no longer holds the job.
 */
export async function deferJob(db: Db, job: HeldJob, runAt: Date, reason: string): Promise<boolean> {
  const { rows } = await sql<{ deferred: number }>`
    with j as (
      update graphile_worker._private_jobs
      set run_at = ${runAt}::timestamptz, attempts = greatest(attempts - 1, 0), last_error = ${reason}, locked_by = null, locked_at = null
      where id = ${job.id}::bigint and locked_by = ${job.poolId}
      returning job_queue_id
    ), q as (
      update graphile_worker._private_job_queues as queues
      set locked_by = null, locked_at = null
      from j
      where queues.id = j.job_queue_id and queues.locked_by = ${job.poolId}
    )
    select count(*)::int as deferred from j`.execute(db);
  return (rows[0]?.deferred ?? 0) > 0;
}

/** Whether the pool still holds the job: asked only when a pool may have been declared dead (its lease ran out). */
export async function holdsJob(db: Db, job: HeldJob): Promise<boolean> {
  const { rows } = await sql<{ held: boolean }>`
    select exists (select 1 from graphile_worker._private_jobs where id = ${job.id}::bigint and locked_by = ${job.poolId}) as held`.execute(db);
  return rows[0]?.held ?? false;
}
