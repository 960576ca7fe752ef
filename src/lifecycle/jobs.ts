/**
 * Reading jobs and acting on them. A job's state comes from graphile-worker's public `jobs` view
 * while the job exists there, and from the service's own record once graphile-worker has deleted
 * it. Operator actions go through graphile-worker's public functions (reschedule_jobs,
 * complete_jobs) and are recorded with who did them, in the same transaction.
 *
 * Two words for where a job is:
 * - its **phase** (`JobPhase`, the `phase` column of job_records) is what the service itself
 *   records: `waiting` (in the queue, whether due, scheduled or waiting to retry), `running`, or
 *   how it ended;
 * - its **state** (`JobState`, what the API, the CLI and the dashboard show) is derived here from
 *   the phase and, while the job still exists, graphile-worker's row, which tells `waiting` apart
 *   as `queued`, `scheduled` or `retry_wait`, and sees `running` and `dead` as they happen.
 * A job is **dead** when it used all its attempts (it stays in the dead-letter); it is
 * **discarded** when an operator removed a dead job from the dead-letter. (River calls what this
 * project calls dead "discarded"; here discarded always means an operator's act.)
 */
import { sql } from "kysely";
import type { Db } from "../db/database.ts";
import type { JobEventRow } from "../db/tables/job-events.ts";
import type { JobPhase, JobRecordRow } from "../db/tables/job-records.ts";

export const JOB_STATES = ["queued", "scheduled", "running", "retry_wait", "succeeded", "dead", "cancelled", "discarded"] as const;
export type JobState = (typeof JOB_STATES)[number];

interface LiveJob {
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
}

export interface JobSummary {
  id: string;
  task: string;
  queue: string | null;
  state: JobState;
  source: string;
  attempts: number;
  maxAttempts: number;
  priority: number;
  jobKey: string | null;
  lastError: string | null;
  runAt: Date;
  createdAt: Date;
  startedAt: Date | null;
  finishedAt: Date | null;
}

/** Jobs a job enqueued (fan-out batches), by phase: the progress of a sweep or a backfill. */
export interface ChildProgress {
  total: number;
  waiting: number;
  running: number;
  succeeded: number;
  dead: number;
  cancelled: number;
  discarded: number;
}

export interface JobDetails extends JobSummary {
  payload: unknown;
  timeline: JobEventRow[];
  /** Null when the job enqueued no jobs. */
  children: ChildProgress | null;
}

export class JobNotFoundError extends Error {
  override name = "JobNotFoundError";
  constructor(id: string) {
    super(`no job with id ${id}`);
  }
}

/** An action that the job's current state does not allow (HTTP 409). */
export class IllegalTransitionError extends Error {
  override name = "IllegalTransitionError";
  readonly state: JobState;
  constructor(action: string, id: string, state: JobState, allowed: readonly JobState[]) {
    super(`cannot ${action} job ${id}: it is ${state} (${action} applies to ${allowed.join(", ")} jobs)`);
    this.state = state;
  }
}

const TERMINAL_PHASES: ReadonlySet<JobPhase> = new Set(["succeeded", "dead", "cancelled", "discarded"]);

/** The state of a job from its graphile-worker row (when it still has one) and its record. */
export function deriveState(live: Pick<LiveJob, "run_at" | "attempts" | "max_attempts" | "locked_at"> | null, record: Pick<JobRecordRow, "phase" | "run_at" | "attempts"> | null, now: Date): JobState {
  if (live) {
    if (live.locked_at) return "running";
    if (live.attempts >= live.max_attempts) return "dead";
    if (live.run_at > now) return live.attempts > 0 ? "retry_wait" : "scheduled";
    return "queued";
  }
  if (!record) return "succeeded";
  if (TERMINAL_PHASES.has(record.phase)) return record.phase as JobState;
  // graphile-worker deletes a job only when it completes (cancel and discard are recorded at once),
  // so a job gone from its table whose success is not written yet has succeeded.
  return "succeeded";
}

/** The state a record alone implies, for listings (which do not read graphile-worker's table). */
function stateOfRecord(record: Pick<JobRecordRow, "phase" | "run_at" | "attempts">, now: Date): JobState {
  if (record.phase !== "waiting") return record.phase;
  if (record.run_at > now) return record.attempts > 0 ? "retry_wait" : "scheduled";
  return "queued";
}

async function findLive(db: Db, ids: string[]): Promise<Map<string, LiveJob>> {
  if (ids.length === 0) return new Map();
  const rows = await db
    .selectFrom("graphile_worker.jobs")
    .select(["id", "task_identifier", "created_at", "run_at", "attempts", "max_attempts", "last_error", "locked_at", "locked_by", "queue_name", "key", "priority"])
    .where("id", "in", ids)
    .execute();
  return new Map(rows.map((row) => [String(row.id), row]));
}

function summarise(record: JobRecordRow, live: LiveJob | undefined, now: Date): JobSummary {
  return {
    id: String(record.id),
    task: record.task,
    queue: live?.queue_name ?? record.queue,
    state: live ? deriveState(live, record, now) : deriveState(null, record, now),
    source: record.source,
    attempts: live?.attempts ?? record.attempts,
    maxAttempts: live?.max_attempts ?? record.max_attempts,
    priority: live?.priority ?? record.priority,
    jobKey: live ? live.key : record.job_key,
    lastError: live?.last_error ?? record.last_error,
    runAt: live?.run_at ?? record.run_at,
    createdAt: record.created_at,
    startedAt: record.started_at,
    finishedAt: record.finished_at,
  };
}

/** A job with its payload (as stored: redacted) and its whole history, or null. */
export async function findJob(db: Db, id: string): Promise<JobDetails | null> {
  if (!/^\d{1,19}$/.test(id)) return null;
  const [record, live, timeline, children] = await Promise.all([
    db.selectFrom("observing_jobs.job_records").selectAll().where("id", "=", id).executeTakeFirst(),
    findLive(db, [id]),
    db.selectFrom("observing_jobs.job_events").selectAll().where("job_id", "=", id).orderBy("id").execute(),
    findChildProgress(db, id),
  ]);
  const liveJob = live.get(id);
  if (record) return { ...summarise(record, liveJob, new Date()), payload: record.payload, timeline, children };
  if (!liveJob) return null;
  // Added by plain SQL and not started yet: graphile-worker's view is all there is (it hides payloads).
  return {
    id,
    task: liveJob.task_identifier,
    queue: liveJob.queue_name,
    state: deriveState(liveJob, null, new Date()),
    source: "sql",
    attempts: liveJob.attempts,
    maxAttempts: liveJob.max_attempts,
    priority: liveJob.priority,
    jobKey: liveJob.key,
    lastError: liveJob.last_error,
    runAt: liveJob.run_at,
    createdAt: liveJob.created_at,
    startedAt: null,
    finishedAt: null,
    payload: null,
    timeline,
    children,
  };
}

async function findChildProgress(db: Db, id: string): Promise<ChildProgress | null> {
  const rows = await db
    .selectFrom("observing_jobs.job_records")
    .select(["phase", (eb) => eb.fn.countAll<string>().as("count")])
    .where("parent_id", "=", id)
    .groupBy("phase")
    .execute();
  if (rows.length === 0) return null;
  const progress: ChildProgress = { total: 0, waiting: 0, running: 0, succeeded: 0, dead: 0, cancelled: 0, discarded: 0 };
  for (const row of rows) {
    progress[row.phase] = Number(row.count);
    progress.total += Number(row.count);
  }
  return progress;
}

export interface JobFilter {
  task?: string;
  state?: JobState;
  queue?: string;
  /** Created at or after. */
  from?: Date;
  /** Created before. */
  to?: Date;
  /** Cursor: only jobs with a smaller id (newest first). */
  before?: string;
  limit: number;
}

/** Newest first, keyset-paginated by id; every filter is served by an index on job_records. */
export async function listJobs(db: Db, filter: JobFilter): Promise<{ jobs: JobSummary[]; nextCursor: string | null }> {
  const now = new Date();
  let query = db.selectFrom("observing_jobs.job_records").selectAll().orderBy("id", "desc").limit(filter.limit + 1);
  if (filter.task) query = query.where("task", "=", filter.task);
  if (filter.queue) query = query.where("queue", "=", filter.queue);
  if (filter.from) query = query.where("created_at", ">=", filter.from);
  if (filter.to) query = query.where("created_at", "<", filter.to);
  if (filter.before) query = query.where("id", "<", filter.before);
  switch (filter.state) {
    case undefined:
      break;
    case "queued":
      query = query.where("phase", "=", "waiting").where("run_at", "<=", now);
      break;
    case "scheduled":
      query = query.where("phase", "=", "waiting").where("run_at", ">", now).where("attempts", "=", 0);
      break;
    case "retry_wait":
      query = query.where("phase", "=", "waiting").where("run_at", ">", now).where("attempts", ">", 0);
      break;
    default:
      query = query.where("phase", "=", filter.state);
  }
  const rows = await query.execute();
  const page = rows.slice(0, filter.limit);
  const live = await findLive(
    db,
    page.filter((row) => !TERMINAL_PHASES.has(row.phase) || row.phase === "dead").map((row) => String(row.id)),
  );
  return {
    jobs: page.map((row) => {
      const summary = summarise(row, live.get(String(row.id)), now);
      // Without a live row a waiting record tells queued, scheduled and retry-wait apart by itself; a
      // running one whose success was never written (a SIGKILL lost the buffer) has succeeded.
      return !live.has(String(row.id)) && row.phase === "waiting" ? { ...summary, state: stateOfRecord(row, now) } : summary;
    }),
    nextCursor: rows.length > filter.limit ? String(page.at(-1)!.id) : null,
  };
}

/** The newest job ever enqueued with this key, in any state (idempotent requests). */
export async function findJobByKey(db: Db, key: string): Promise<JobDetails | null> {
  const row = await db
    .selectFrom("observing_jobs.job_records")
    .select("id")
    .where("job_key", "=", key)
    .orderBy("id", "desc")
    .limit(1)
    .executeTakeFirst();
  return row ? findJob(db, String(row.id)) : null;
}

async function findJobOrThrow(db: Db, id: string): Promise<JobDetails> {
  const job = await findJob(db, id);
  if (!job) throw new JobNotFoundError(id);
  return job;
}

/** A dead (or failed, waiting to retry) job goes back to the queue now, attempts reset, history kept. */
export async function retryJob(db: Db, id: string, actor: string): Promise<JobDetails> {
  const allowed = ["dead", "retry_wait"] as const;
  return act(db, id, actor, "retry", allowed, "retried", async (trx) => {
    const { rows } = await sql<{ id: string; run_at: Date }>`
      select id, run_at from graphile_worker.reschedule_jobs(array[${id}::bigint], run_at => now(), attempts => 0)`.execute(trx);
    if (rows.length === 0) return false;
    await trx
      .updateTable("observing_jobs.job_records")
      .set({ phase: "waiting", attempts: 0, run_at: rows[0]!.run_at, finished_at: null, updated_at: new Date() })
      .where("id", "=", id)
      .execute();
    return true;
  });
}

const CANCELLABLE = ["queued", "scheduled", "retry_wait"] as const;

/**
 * A job that has not started (queued, scheduled or waiting to retry) is removed from the queue,
 * and so are the jobs it enqueued that have not started (a backfill's pending batches): cancelling
 * a fan-out that has already run stops what is left of it.
 */
export async function cancelJob(db: Db, id: string, actor: string): Promise<JobDetails> {
  const job = await findJobOrThrow(db, id);
  const hasPendingChildren = (job.children?.waiting ?? 0) > 0;
  if (!(CANCELLABLE as readonly JobState[]).includes(job.state) && !hasPendingChildren) {
    throw new IllegalTransitionError("cancel", id, job.state, CANCELLABLE);
  }
  if ((CANCELLABLE as readonly JobState[]).includes(job.state)) {
    await act(db, id, actor, "cancel", CANCELLABLE, "cancelled", (trx) => removeJob(trx, id, "cancelled"));
  }
  if (hasPendingChildren) await cancelPendingChildren(db, id, actor);
  return findJobOrThrow(db, id);
}

async function cancelPendingChildren(db: Db, parentId: string, actor: string): Promise<void> {
  await db.transaction().execute(async (trx) => {
    const pending = await trx
      .selectFrom("observing_jobs.job_records")
      .select("id")
      .where("parent_id", "=", parentId)
      .where("phase", "=", "waiting")
      .execute();
    if (pending.length === 0) return;
    // complete_jobs skips jobs that started meanwhile: those run to their end.
    const { rows } = await sql<{ id: string }>`
      select id from graphile_worker.complete_jobs(${pending.map((row) => String(row.id))}::bigint[])`.execute(trx);
    if (rows.length === 0) return;
    const ids = rows.map((row) => String(row.id));
    const now = new Date();
    const cancelled = await trx
      .updateTable("observing_jobs.job_records")
      .set({ phase: "cancelled", finished_at: now, updated_at: now })
      .where("id", "in", ids)
      .returning(["id", "task", "queue", "attempts"])
      .execute();
    await trx
      .insertInto("observing_jobs.job_events")
      .values(cancelled.map((row) => ({ job_id: row.id, task: row.task, queue: row.queue, event: "cancelled" as const, attempt: row.attempts, actor })))
      .execute();
  });
}

/** A dead job is removed from the dead-letter; its history stays until retention prunes it. */
export async function discardJob(db: Db, id: string, actor: string): Promise<JobDetails> {
  return act(db, id, actor, "discard", ["dead"], "discarded", (trx) => removeJob(trx, id, "discarded"));
}

async function removeJob(trx: Db, id: string, phase: "cancelled" | "discarded"): Promise<boolean> {
  const { rows } = await sql<{ id: string }>`select id from graphile_worker.complete_jobs(array[${id}::bigint])`.execute(trx);
  if (rows.length === 0) return false;
  const now = new Date();
  await trx.updateTable("observing_jobs.job_records").set({ phase, finished_at: now, updated_at: now }).where("id", "=", id).execute();
  return true;
}

async function act(
  db: Db,
  id: string,
  actor: string,
  action: string,
  allowed: readonly JobState[],
  event: "retried" | "cancelled" | "discarded",
  change: (trx: Db) => Promise<boolean>,
): Promise<JobDetails> {
  // Read the state outside the transaction (graphile-worker advises against reading its view in one).
  const job = await findJobOrThrow(db, id);
  if (!allowed.includes(job.state)) throw new IllegalTransitionError(action, id, job.state, allowed);
  const changed = await db.transaction().execute(async (trx) => {
    // A job added by plain SQL that never ran has no record yet; give it one so the action shows.
    await trx
      .insertInto("observing_jobs.job_records")
      .values({
        id,
        task: job.task,
        queue: job.queue,
        source: "sql",
        payload: null,
        phase: "waiting",
        priority: job.priority,
        attempts: job.attempts,
        max_attempts: job.maxAttempts,
        job_key: job.jobKey,
        run_at: job.runAt,
        created_at: job.createdAt,
      })
      .onConflict((oc) => oc.column("id").doNothing())
      .execute();
    if (!(await change(trx))) return false;
    await trx
      .insertInto("observing_jobs.job_events")
      .values({ job_id: id, task: job.task, queue: job.queue, event, attempt: job.attempts, actor })
      .execute();
    return true;
  });
  // graphile-worker's functions leave locked jobs alone: the job started in the meantime.
  if (!changed) throw new IllegalTransitionError(action, id, (await findJobOrThrow(db, id)).state, allowed);
  return findJobOrThrow(db, id);
}
