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
 *   as `queued`, `scheduled` or `retry_wait`, and sees `running` and `dead` as they happen. A locked
 *   job is `running` only when its pool's heartbeat says the pool runs it; otherwise it is `queued`,
 *   held in that pool's local queue (src/db/repositories/live-jobs.ts).
 * A job is **dead** when it used all its attempts (it stays in the dead-letter); it is
 * **discarded** when an operator removed a dead job from the dead-letter. (River calls what this
 * project calls dead "discarded"; here discarded always means an operator's act.)
 */
import { sql } from "kysely";
import type { Db } from "../db/database.ts";
import { findLiveJobs, listLiveJobs as listLivePage, type LiveJob, type LiveState } from "../db/repositories/live-jobs.ts";
import {
  countChildren,
  ensureRecord,
  findEvents,
  findNewestIdByKey,
  findRecord,
  findRecords,
  findWaitingChildren,
  insertEvents,
  listRecords,
  listRecordsEndedBy,
  recordChangesHere,
  RECORD_CHUNK_SIZE,
  resultOf,
  setPhase,
} from "../db/repositories/job-records.ts";
import type { JobEventRow } from "../db/tables/job-events.ts";
import type { JobPhase, JobRecordRow } from "../db/tables/job-records.ts";

export const JOB_STATES = ["queued", "scheduled", "running", "retry_wait", "succeeded", "dead", "cancelled", "discarded"] as const;
export type JobState = (typeof JOB_STATES)[number];

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

/** A history event: stored (numeric id) or implied by the record and graphile-worker's lock (named id, e.g. `started-2`). */
export type TimelineEvent = Omit<JobEventRow, "id"> & { id: string };

export interface JobDetails extends JobSummary {
  payload: unknown;
  /** What the handler returned (src/lifecycle/results.ts), once the job succeeded; null when none. */
  result: unknown;
  timeline: TimelineEvent[];
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
    super(
      allowed.includes(state)
        ? // Only a lock stops an action on a job in an allowed state: a worker has fetched it into its local queue.
          `cannot ${action} job ${id}: it is ${state}, but a worker has already fetched it to run next (it waits in that worker's local queue, where it can no longer be changed)`
        : `cannot ${action} job ${id}: it is ${state} (${action} applies to ${allowed.join(", ")} jobs)`,
    );
    this.state = state;
  }
}

const TERMINAL_PHASES: ReadonlySet<JobPhase> = new Set(["succeeded", "dead", "cancelled", "discarded"]);

/**
 * The state of a job: graphile-worker's row while it has one (running when its pool runs it),
 * otherwise the record, which the recording triggers end in the same statement as graphile-worker's
 * delete. A locked job its pool does not run waits in the pool's local queue: queued (it was due
 * when it was fetched, and graphile-worker counted the attempt it has not begun).
 */
export function deriveState(
  live: Pick<LiveJob, "run_at" | "attempts" | "max_attempts" | "locked_at" | "running"> | null,
  record: Pick<JobRecordRow, "phase" | "run_at" | "attempts"> | null,
  now: Date,
): JobState {
  if (live) {
    if (live.running) return "running";
    if (live.locked_at) return "queued";
    if (live.attempts >= live.max_attempts) return "dead";
    if (live.run_at > now) return live.attempts > 0 ? "retry_wait" : "scheduled";
    return "queued";
  }
  if (!record) return "succeeded";
  return stateOfRecord(record, now);
}

/** The state a record alone implies. */
function stateOfRecord(record: Pick<JobRecordRow, "phase" | "run_at" | "attempts">, now: Date): JobState {
  if (record.phase !== "waiting") return record.phase;
  if (record.run_at > now) return record.attempts > 0 ? "retry_wait" : "scheduled";
  return "queued";
}

async function findLive(db: Db, ids: string[]): Promise<Map<string, LiveJob>> {
  const rows = await findLiveJobs(db, ids);
  return new Map(rows.map((row) => [String(row.id), row]));
}

/**
 * Attempts begun. graphile-worker counts an attempt when it locks the job, so a job held in a local
 * queue already has the attempt it has not begun (the sweeper gives it back if the pool dies).
 */
function attemptsOf(live: LiveJob): number {
  return live.locked_at && !live.running ? Math.max(0, live.attempts - 1) : live.attempts;
}

/** When the attempt in progress began: graphile-worker's lock, for a job its pool runs. */
function startOf(live: LiveJob | undefined): Date | null {
  return live?.running ? live.locked_at : null;
}

function summarise(record: JobRecordRow, live: LiveJob | undefined, now: Date): JobSummary {
  return {
    id: String(record.id),
    task: record.task,
    queue: live?.queue_name ?? record.queue,
    state: deriveState(live ?? null, record, now),
    source: record.source,
    attempts: live ? attemptsOf(live) : record.attempts,
    maxAttempts: live?.max_attempts ?? record.max_attempts,
    priority: live?.priority ?? record.priority,
    jobKey: live ? live.key : record.job_key,
    lastError: live?.last_error ?? record.last_error,
    runAt: live?.run_at ?? record.run_at,
    createdAt: record.created_at,
    startedAt: startOf(live) ?? record.started_at,
    finishedAt: live ? null : record.finished_at,
  };
}

/** A job graphile-worker has that no record describes yet (added by plain SQL, not ended an attempt). */
function summariseLive(live: LiveJob, now: Date): JobSummary {
  return {
    id: String(live.id),
    task: live.task_identifier,
    queue: live.queue_name,
    state: deriveState(live, null, now),
    source: "sql",
    attempts: attemptsOf(live),
    maxAttempts: live.max_attempts,
    priority: live.priority,
    jobKey: live.key,
    lastError: live.last_error,
    runAt: live.run_at,
    createdAt: live.created_at,
    startedAt: startOf(live),
    finishedAt: null,
  };
}

/** A job with its payload (as stored: redacted) and its whole history, or null. */
export async function findJob(db: Db, id: string): Promise<JobDetails | null> {
  if (!/^\d{1,19}$/.test(id) || BigInt(id) > MAX_BIGINT) return null;
  const [record, live, events, children] = await Promise.all([findRecord(db, id), findLive(db, [id]), findEvents(db, id), findChildProgress(db, id)]);
  const liveJob = live.get(id);
  const now = new Date();
  if (record) {
    const summary = summarise(record, liveJob, now);
    return { ...summary, payload: record.payload, result: liveJob ? null : resultOf(record), timeline: buildTimeline(record, liveJob, events), children };
  }
  if (!liveJob) return null;
  // Added by plain SQL and not ended an attempt yet: graphile-worker's view is all there is (it hides payloads).
  return { ...summariseLive(liveJob, now), payload: null, result: null, timeline: buildTimeline(null, liveJob, events), children };
}

const MAX_BIGINT = 9_223_372_036_854_775_807n;

/** Events that end an attempt and carry how long it ran (an abandoned attempt's pool also wrote `rescued`). */
const ENDS_OF_UNSUCCESSFUL_ATTEMPTS = new Set(["failed", "rescued", "deferred"]);

/**
 * The job's history, oldest first: the events stored (failures, rescues, operator actions) and
 * those its record and graphile-worker's lock imply (enqueued, each attempt's start, the success).
 * A job held in a local queue has not started: no start is implied until its pool says it runs it.
 * Records written before job records v2 also kept the implied events as rows: those are not repeated.
 */
function buildTimeline(record: JobRecordRow | null, live: LiveJob | undefined, stored: JobEventRow[]): TimelineEvent[] {
  const events: TimelineEvent[] = stored.map((event) => ({ ...event, id: String(event.id) }));
  const has = (name: string, attempt?: number) => stored.some((event) => event.event === name && (attempt === undefined || event.attempt === attempt));
  const jobId = String(record?.id ?? live?.id);
  const task = record?.task ?? live!.task_identifier;
  const queue = record?.queue ?? live?.queue_name ?? null;
  const implied = (event: Partial<TimelineEvent> & Pick<TimelineEvent, "id" | "event" | "at">): TimelineEvent => ({
    job_id: jobId,
    task,
    queue,
    attempt: null,
    source: null,
    worker_id: null,
    actor: null,
    error: null,
    stack: null,
    duration_ms: null,
    run_at: null,
    trace_id: record?.trace_id ?? null,
    ...event,
  });
  if (record && !has("enqueued")) {
    events.push(implied({ id: "enqueued", event: "enqueued", attempt: 0, source: record.source, actor: record.enqueued_by, run_at: null, at: record.created_at }));
  }
  // Each start of an attempt that did not succeed, from how long it had run.
  for (const ended of stored) {
    if (!ENDS_OF_UNSUCCESSFUL_ATTEMPTS.has(ended.event) || ended.attempt === null || has("started", ended.attempt) || ended.duration_ms === null) continue;
    // Never before the job existed: the duration is this process's clock, the times the database's.
    const startedAt = Math.max(ended.at.getTime() - ended.duration_ms, record?.created_at.getTime() ?? Number.NEGATIVE_INFINITY);
    events.push(implied({ id: `started-before-${ended.id}`, event: "started", attempt: ended.attempt, worker_id: ended.worker_id, at: new Date(startedAt) }));
  }
  const current = live?.running && live.locked_at
    ? { attempt: live.attempts, at: live.locked_at, workerId: live.locked_by }
    : record?.started_at && record.phase === "succeeded"
      ? { attempt: record.attempts, at: record.started_at, workerId: record.worker_id }
      : null;
  if (current && !has("started", current.attempt)) {
    events.push(implied({ id: `started-${current.attempt}`, event: "started", attempt: current.attempt, worker_id: current.workerId, at: current.at }));
  }
  if (!live && record?.phase === "succeeded" && record.finished_at && !has("succeeded")) {
    const durationMs = record.started_at ? record.finished_at.getTime() - record.started_at.getTime() : null;
    events.push(implied({ id: "succeeded", event: "succeeded", attempt: record.attempts, worker_id: record.worker_id, duration_ms: durationMs, at: record.finished_at }));
  }
  const order: Record<string, number> = { enqueued: 0, started: 1 };
  return events.sort((a, b) => a.at.getTime() - b.at.getTime() || (order[a.event] ?? 2) - (order[b.event] ?? 2));
}

async function findChildProgress(db: Db, id: string): Promise<ChildProgress | null> {
  const counts = await countChildren(db, id);
  if (!counts) return null;
  const progress: ChildProgress = { total: 0, waiting: 0, running: 0, succeeded: 0, dead: 0, cancelled: 0, discarded: 0 };
  for (const [phase, count] of Object.entries(counts.byPhase)) {
    progress[phase as JobPhase] = count;
    progress.total += count;
  }
  progress.running = Math.min(counts.running, progress.waiting);
  progress.waiting -= progress.running;
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

/** States graphile-worker's own row tells (the job is still in its table). */
const LIVE_STATES: ReadonlySet<JobState> = new Set(["queued", "scheduled", "retry_wait", "running", "dead"] satisfies LiveState[]);

function isLive(filter: JobFilter): filter is JobFilter & { state: LiveState } {
  return filter.state !== undefined && LIVE_STATES.has(filter.state);
}

/**
 * Newest first, keyset-paginated by id. Jobs graphile-worker still has (queued, scheduled,
 * waiting to retry, running, dead) are listed from its `jobs` view, so their state is never stale;
 * succeeded ones from the records, cancelled and discarded ones through their events. Every
 * variant is served by an index (test/lifecycle/records-v2.test.ts).
 */
export async function listJobs(db: Db, filter: JobFilter): Promise<{ jobs: JobSummary[]; nextCursor: string | null }> {
  const now = new Date();
  if (isLive(filter)) return listLiveJobs(db, filter, now);
  const { state, ...narrowing } = filter;
  const rows = await (state === "cancelled" || state === "discarded"
    ? listRecordsEndedBy(db, state, narrowing)
    : listRecords(db, { ...narrowing, ...(state === "succeeded" ? { phase: "succeeded" as const } : {}) }));
  const page = rows.slice(0, filter.limit);
  const live = await findLive(db, page.filter((row) => !TERMINAL_PHASES.has(row.phase)).map((row) => String(row.id)));
  return {
    jobs: page.map((row) => summarise(row, live.get(String(row.id)), now)),
    nextCursor: rows.length > filter.limit ? String(page.at(-1)!.id) : null,
  };
}

async function listLiveJobs(db: Db, filter: JobFilter & { state: LiveState }, now: Date): Promise<{ jobs: JobSummary[]; nextCursor: string | null }> {
  const rows = await listLivePage(db, filter, now);
  const page = rows.slice(0, filter.limit);
  const ids = page.map((row) => String(row.id));
  const records = await findRecords(db, ids);
  const byId = new Map(records.map((record) => [String(record.id), record]));
  return {
    jobs: page.map((live) => {
      const record = byId.get(String(live.id));
      return record ? summarise(record, live, now) : summariseLive(live, now);
    }),
    nextCursor: rows.length > filter.limit ? String(page.at(-1)!.id) : null,
  };
}

/** The newest job ever enqueued with this key, in any state (idempotent requests). */
export async function findJobByKey(db: Db, key: string): Promise<JobDetails | null> {
  const id = await findNewestIdByKey(db, key);
  return id ? findJob(db, id) : null;
}

async function findJobOrThrow(db: Db, id: string): Promise<JobDetails> {
  const job = await findJob(db, id);
  if (!job) throw new JobNotFoundError(id);
  return job;
}

/** A dead (or failed, waiting to retry) job goes back to the queue now, attempts reset, history kept. */
export async function retryJob(db: Db, id: string, actor: string): Promise<JobDetails> {
  return act(db, id, actor, "retry", ACTION_STATES.retry, "retried", async (trx) => {
    const { rows } = await sql<{ id: string; run_at: Date }>`
      select id, run_at from graphile_worker.reschedule_jobs(array[${id}::bigint], run_at => now(), attempts => 0)`.execute(trx);
    if (rows.length === 0) return false;
    await setPhase(trx, [id], { phase: "waiting", finished: false, attempts: 0, runAt: rows[0]!.run_at });
    return true;
  });
}

/** What an operator may do to a job (through the API and the dashboard). */
export const JOB_ACTIONS = ["retry", "cancel", "discard"] as const;
export type JobAction = (typeof JOB_ACTIONS)[number];

/** The states each action applies to (cancel also applies to a job with children that have not started). */
const ACTION_STATES = {
  retry: ["dead", "retry_wait"],
  cancel: ["queued", "scheduled", "retry_wait"],
  discard: ["dead"],
} as const satisfies Record<JobAction, readonly JobState[]>;
const CANCELLABLE = ACTION_STATES.cancel;

const inStates = (states: readonly JobState[], state: JobState) => states.includes(state);

/**
 * Whether the action applies to the job as it is now: the rule the actions below enforce, and what
 * the dashboard offers. (A worker may still fetch the job first: the action then answers 409.)
 */
export function actionApplies(action: JobAction, job: Pick<JobDetails, "state" | "children">): boolean {
  if (action === "cancel") return inStates(CANCELLABLE, job.state) || hasPendingChildren(job);
  return inStates(ACTION_STATES[action], job.state);
}

/** The actions that apply to the job now, in JOB_ACTIONS order. */
export function applicableActions(job: Pick<JobDetails, "state" | "children">): JobAction[] {
  return JOB_ACTIONS.filter((action) => actionApplies(action, job));
}

/** Jobs it enqueued that have not started (a cancel removes them too). */
export function hasPendingChildren(job: Pick<JobDetails, "children">): boolean {
  return (job.children?.waiting ?? 0) > 0;
}

/**
 * A job that has not started (queued, scheduled or waiting to retry) is removed from the queue,
 * and so are the jobs it enqueued that have not started (a backfill's pending batches): cancelling
 * a fan-out that has already run stops what is left of it.
 */
export async function cancelJob(db: Db, id: string, actor: string): Promise<JobDetails> {
  const job = await findJobOrThrow(db, id);
  if (!actionApplies("cancel", job)) throw new IllegalTransitionError("cancel", id, job.state, CANCELLABLE);
  if (inStates(CANCELLABLE, job.state)) {
    await act(db, id, actor, "cancel", CANCELLABLE, "cancelled", (trx) => removeJob(trx, id, "cancelled"));
  }
  if (hasPendingChildren(job)) await cancelPendingChildren(db, id, actor);
  return findJobOrThrow(db, id);
}

/**
 * Cancels a fan-out's children that have not started, a chunk at a time, each chunk in a short
 * transaction of its own (ids as arrays): a backfill of any size is cancelled without long locks,
 * and running the action again picks up what is left.
 */
async function cancelPendingChildren(db: Db, parentId: string, actor: string): Promise<void> {
  let after: string | null = null;
  for (;;) {
    const pending = await findWaitingChildren(db, parentId, after, RECORD_CHUNK_SIZE);
    if (pending.length === 0) return;
    after = pending.at(-1)!;
    await db.transaction().execute(async (trx) => {
      await recordChangesHere(trx);
      // complete_jobs skips jobs that started meanwhile: those run to their end.
      const { rows } = await sql<{ id: string }>`select id from graphile_worker.complete_jobs(${pending}::bigint[])`.execute(trx);
      const cancelled = await setPhase(trx, rows.map((row) => String(row.id)), { phase: "cancelled", finished: true });
      await insertEvents(trx, cancelled.map((row) => ({ jobId: String(row.id), task: row.task, queue: row.queue, event: "cancelled" as const, attempt: row.attempts, actor })));
    });
    if (pending.length < RECORD_CHUNK_SIZE) return;
  }
}

/** A dead job is removed from the dead-letter; its history stays until retention prunes it. */
export async function discardJob(db: Db, id: string, actor: string): Promise<JobDetails> {
  return act(db, id, actor, "discard", ACTION_STATES.discard, "discarded", (trx) => removeJob(trx, id, "discarded"));
}

async function removeJob(trx: Db, id: string, phase: "cancelled" | "discarded"): Promise<boolean> {
  const { rows } = await sql<{ id: string }>`select id from graphile_worker.complete_jobs(array[${id}::bigint])`.execute(trx);
  if (rows.length === 0) return false;
  await setPhase(trx, [id], { phase, finished: true });
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
    await recordChangesHere(trx);
    // A job added by plain SQL that never ran has no record yet; give it one so the action shows.
    await ensureRecord(trx, job);
    if (!(await change(trx))) return false;
    await insertEvents(trx, [{ jobId: id, task: job.task, queue: job.queue, event, attempt: job.attempts, actor }]);
    return true;
  });
  // graphile-worker's functions leave locked jobs alone: the job started in the meantime, or a
  // worker fetched it into its local queue (still queued, but no longer ours to change).
  if (!changed) throw new IllegalTransitionError(action, id, (await findJobOrThrow(db, id)).state, allowed);
  return findJobOrThrow(db, id);
}
