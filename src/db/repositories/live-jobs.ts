/**
 * Every statement on graphile-worker's public `jobs` view: the jobs it still has (waiting, held,
 * running, dead). Never read inside a transaction (graphile-worker's advice).
 *
 * graphile-worker's lock alone does not say a job runs. With a local queue a pool locks the jobs it
 * fetches in one query, and starts each one only when a slot is free: until then the job is
 * **held** (locked, waiting in that pool's local queue). Each pool's heartbeat lists the jobs it
 * was really running at that beat (`worker_heartbeats.running_job_ids`, migration 0014). A locked
 * job is running unless its pool's last beat listed what it runs and this job was not among them;
 * a pool that does not say (an older instance: null; no heartbeat row) has all its jobs running.
 * `runningNow` and `heldInLocalQueue` below are the one place that rule is written: the listings,
 * the job page, the queue counts (API, dashboard, metrics) and a fan-out's progress all use them.
 * The list is as fresh as the last beat: a job that has just started stays held until the next one.
 */
import { sql, type RawBuilder } from "kysely";
import type { Db } from "../database.ts";

/** The job's pool (`alias` names a row of graphile-worker's `jobs`) listed the jobs it runs at its last beat, and not this one. */
function notListedByItsPool(alias: string): RawBuilder<boolean> {
  const column = (name: string) => sql.ref(`${alias}.${name}`);
  // One primary-key probe of the (small) heartbeats table per locked job.
  return sql<boolean>`exists (
    select 1 from observing_jobs.worker_heartbeats h
    where h.pool_id = ${column("locked_by")} and h.running_job_ids is not null and ${column("id")} <> all(h.running_job_ids))`;
}

/** The job (as `alias`) is locked by a pool that does not run it: it waits in the pool's local queue. */
export function heldInLocalQueue(alias: string): RawBuilder<boolean> {
  return sql<boolean>`(${sql.ref(`${alias}.locked_at`)} is not null and ${notListedByItsPool(alias)})`;
}

/** The job (as `alias`) is locked and its pool runs it, as far as the pool's last heartbeat says. */
export function runningNow(alias: string): RawBuilder<boolean> {
  return sql<boolean>`(${sql.ref(`${alias}.locked_at`)} is not null and not ${notListedByItsPool(alias)})`;
}

/** A job as graphile-worker's view has it, with whether it runs now (`runningNow`). */
export interface LiveJob {
  id: string;
  task_identifier: string;
  created_at: Date;
  run_at: Date;
  attempts: number;
  max_attempts: number;
  last_error: string | null;
  locked_at: Date | null;
  locked_by: string | null;
  queue_name: string | null;
  key: string | null;
  priority: number;
  /** Locked and run by its pool; a locked job that is not running waits in its pool's local queue. */
  running: boolean;
}

const LIVE_COLUMNS = ["j.id", "j.task_identifier", "j.created_at", "j.run_at", "j.attempts", "j.max_attempts", "j.last_error", "j.locked_at", "j.locked_by", "j.queue_name", "j.key", "j.priority"] as const;

function selectLive(db: Db) {
  return db
    .selectFrom("graphile_worker.jobs as j")
    .select([...LIVE_COLUMNS, runningNow("j").as("running")]);
}

export async function findLiveJobs(db: Db, ids: readonly string[]): Promise<LiveJob[]> {
  if (ids.length === 0) return [];
  return selectLive(db).where(sql<boolean>`j.id = any(${ids}::bigint[])`).execute();
}

/** The states graphile-worker's row tells (see src/lifecycle/jobs.ts). */
export type LiveState = "queued" | "scheduled" | "retry_wait" | "running" | "dead";

export interface LivePage {
  task?: string;
  queue?: string;
  state?: LiveState;
  /** Created at or after. */
  from?: Date;
  /** Created before. */
  to?: Date;
  /** Only ids below this one. */
  before?: string;
  limit: number;
}

/** One page of live jobs, newest first (keyset by id), one more than the limit (so the caller knows whether another follows). */
export async function listLiveJobs(db: Db, page: LivePage, now: Date): Promise<LiveJob[]> {
  let query = selectLive(db).orderBy("j.id", "desc").limit(page.limit + 1);
  if (page.task) query = query.where("j.task_identifier", "=", page.task);
  if (page.queue) query = query.where("j.queue_name", "=", page.queue);
  if (page.from) query = query.where("j.created_at", ">=", page.from);
  if (page.to) query = query.where("j.created_at", "<", page.to);
  if (page.before) query = query.where("j.id", "<", page.before);
  switch (page.state) {
    case "running":
      query = query.where(runningNow("j"));
      break;
    case "dead":
      query = query.where("j.locked_at", "is", null).where(sql<boolean>`j.attempts >= j.max_attempts`);
      break;
    case "queued":
      // Due and unlocked, or held in a local queue (a locked job was due when it was fetched).
      query = query.where((eb) =>
        eb.or([
          eb.and([eb("j.locked_at", "is", null), sql<boolean>`j.attempts < j.max_attempts`, eb("j.run_at", "<=", now)]),
          heldInLocalQueue("j"),
        ]),
      );
      break;
    case "scheduled":
      query = query.where("j.locked_at", "is", null).where("j.attempts", "=", 0).where("j.run_at", ">", now);
      break;
    case "retry_wait":
      query = query.where("j.locked_at", "is", null).where("j.attempts", ">", 0).where(sql<boolean>`j.attempts < j.max_attempts`).where("j.run_at", ">", now);
      break;
  }
  return query.execute();
}

export interface LiveCounts {
  task: string;
  queue: string | null;
  /** Due and not running: unlocked, or held in a local queue. */
  ready: number;
  scheduled: number;
  running: number;
  retryWait: number;
  dead: number;
  /** Seconds the oldest ready job has waited past its run time; null when none is ready. */
  oldestReadyAgeSeconds: number | null;
}

/** Jobs per task and queue and per state: one pass over graphile-worker's table. */
export async function countLiveJobs(db: Db): Promise<LiveCounts[]> {
  const { rows } = await sql<{
    task: string;
    queue: string | null;
    ready: number;
    scheduled: number;
    running: number;
    retry_wait: number;
    dead: number;
    oldest_ready_age: number | null;
  }>`
    select
      task_identifier as task,
      queue_name as queue,
      count(*) filter (where ready)::int as ready,
      count(*) filter (where not locked and attempts = 0 and run_at > now())::int as scheduled,
      count(*) filter (where running)::int as running,
      count(*) filter (where not locked and attempts > 0 and attempts < max_attempts and run_at > now())::int as retry_wait,
      count(*) filter (where not locked and attempts >= max_attempts)::int as dead,
      extract(epoch from now() - min(run_at) filter (where ready))::float8 as oldest_ready_age
    from (
      select j.task_identifier, j.queue_name, j.run_at, j.attempts, j.max_attempts, j.locked_at is not null as locked,
        ${runningNow("j")} as running,
        (j.locked_at is null and j.attempts < j.max_attempts and j.run_at <= now()) or ${heldInLocalQueue("j")} as ready
      from graphile_worker.jobs j
    ) as j
    group by task_identifier, queue_name
    order by task_identifier, queue_name nulls first`.execute(db);
  return rows.map((row) => ({
    task: row.task,
    queue: row.queue,
    ready: row.ready,
    scheduled: row.scheduled,
    running: row.running,
    retryWait: row.retry_wait,
    dead: row.dead,
    oldestReadyAgeSeconds: row.oldest_ready_age,
  }));
}
