/**
 * Every statement on the service's job records (job_records, job_events, job_outcome_counts,
 * cron_runs), taking the database or a transaction first. The end of each attempt is recorded by
 * triggers inside graphile-worker's own statements (migration 0008); what is written from here is
 * the record at enqueue (in the same statement as `add_job`), the events only the service knows
 * (a failed attempt's stack and duration, rescues, operator actions), and operator changes.
 */
import { sql, type Kysely, type RawBuilder } from "kysely";
import type { Db } from "../database.ts";
import type { JobEventName } from "../tables/job-events.ts";
import type { JobPhase, JobRecordRow, JobSource } from "../tables/job-records.ts";
import { runningNow } from "./live-jobs.ts";

// Any application's Kysely instance or transaction (enqueue runs inside the caller's): the statements name their tables.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyKysely = Kysely<any>;

/** Who enqueued a job, as its record keeps it. */
export interface RecordOrigin {
  source: JobSource;
  actor?: string | null;
  parentId?: string | null;
}

/** Ids per statement for set-based changes that also lock rows: short transactions, bounded arrays. */
export const RECORD_CHUNK_SIZE = 5000;

/**
 * The record insert that rides along graphile-worker's `add_job`/`add_jobs` in one statement.
 * `jobs` selects graphile-worker's returned rows plus a `stored` column (the payload as history
 * keeps it). A keyed job replaced while waiting keeps its id: its record is brought up to date.
 * The single-job enqueue builds it once with stand-ins for the values (src/db/prepared-statements.ts):
 * it must bind its arguments, never branch on them.
 */
export function insertEnqueuedRecords(
  meta: { task: string; queue: string | null; origin: RecordOrigin; traceId: string | null; keepPayloadOnConflict: boolean },
  jobs: RawBuilder<unknown>,
): RawBuilder<unknown> {
  const { task, queue, origin, traceId, keepPayloadOnConflict } = meta;
  return sql`
    insert into observing_jobs.job_records as r
      (id, task, queue, source, payload, phase, priority, attempts, max_attempts, job_key, run_at, trace_id, parent_id, enqueued_by)
    select j.id, ${task}, ${queue}::text, ${origin.source}, j.stored, 'waiting', j.priority, j.attempts, j.max_attempts,
      j.key, j.run_at, ${traceId}::text, ${origin.parentId ?? null}::bigint, ${origin.actor ?? null}::text
    from (${jobs}) as j
    on conflict (id) do update set
      -- unsafe_dedupe keeps the existing job as it was, payload included
      payload = case when ${keepPayloadOnConflict} then r.payload else excluded.payload end,
      queue = excluded.queue, phase = 'waiting', priority = excluded.priority, attempts = excluded.attempts,
      max_attempts = excluded.max_attempts, job_key = excluded.job_key, run_at = excluded.run_at,
      finished_at = null, updated_at = now()`;
}

/**
 * Inside an operator's transaction: the recording triggers leave this transaction's changes to
 * graphile-worker's table alone, because the action records them itself (with its actor).
 */
export async function recordChangesHere(trx: AnyKysely): Promise<void> {
  await sql`select set_config('observing_jobs.recorded', 'on', true)`.execute(trx);
}

export interface EventInsert {
  jobId: string;
  task: string;
  queue: string | null;
  event: JobEventName;
  attempt: number | null;
  actor?: string | null;
  workerId?: string | null;
  error?: string | null;
  stack?: string | null;
  durationMs?: number | null;
  runAt?: Date | null;
  traceId?: string | null;
  /** When it happened; the database's now() when unset. */
  at?: Date;
}

/** Any number of events in one statement (one array per column, never a parameter per row). */
export async function insertEvents(db: AnyKysely, events: readonly EventInsert[]): Promise<void> {
  if (events.length === 0) return;
  const column = <T>(pick: (event: EventInsert) => T) => events.map(pick);
  await sql`
    insert into observing_jobs.job_events (job_id, task, queue, event, attempt, actor, worker_id, error, stack, duration_ms, run_at, trace_id, at)
    select job_id, task, queue, event, attempt, actor, worker_id, error, stack, duration_ms, run_at, trace_id, coalesce(at, now()) from unnest(
      ${column((e) => e.jobId)}::bigint[], ${column((e) => e.task)}::text[], ${column((e) => e.queue)}::text[],
      ${column((e) => e.event)}::text[], ${column((e) => e.attempt)}::int[], ${column((e) => e.actor ?? null)}::text[],
      ${column((e) => e.workerId ?? null)}::text[], ${column((e) => e.error ?? null)}::text[], ${column((e) => e.stack ?? null)}::text[],
      ${column((e) => e.durationMs ?? null)}::float8[], ${column((e) => e.runAt ?? null)}::timestamptz[], ${column((e) => e.traceId ?? null)}::text[],
      ${column((e) => e.at ?? null)}::timestamptz[]
    ) as e(job_id, task, queue, event, attempt, actor, worker_id, error, stack, duration_ms, run_at, trace_id, at)`.execute(db);
}

/** Per job, how many of its `rescued` events have a reason ending with `suffix`. */
export async function countRescuesMatching(db: AnyKysely, jobIds: readonly string[], suffix: string): Promise<Map<string, number>> {
  if (jobIds.length === 0) return new Map();
  const { rows } = await sql<{ job_id: string; n: number }>`
    select job_id::text, count(*)::int as n from observing_jobs.job_events
    where job_id = any(${[...jobIds]}::bigint[]) and event = 'rescued' and right(error, ${suffix.length}) = ${suffix}
    group by job_id`.execute(db);
  return new Map(rows.map((row) => [row.job_id, row.n]));
}

/** A job added by plain SQL has no record until its first attempt ends; an operator acting on it first gives it one. */
export async function ensureRecord(
  trx: Db,
  job: { id: string; task: string; queue: string | null; priority: number; attempts: number; maxAttempts: number; jobKey: string | null; runAt: Date; createdAt: Date },
): Promise<void> {
  await trx
    .insertInto("observing_jobs.job_records")
    .values({
      id: job.id,
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
}

export async function setPhase(
  trx: Db,
  ids: readonly string[],
  change: { phase: JobPhase; finished: boolean; attempts?: number; runAt?: Date },
): Promise<Array<Pick<JobRecordRow, "id" | "task" | "queue" | "attempts">>> {
  if (ids.length === 0) return [];
  const now = new Date();
  return trx
    .updateTable("observing_jobs.job_records")
    .set({
      phase: change.phase,
      finished_at: change.finished ? now : null,
      updated_at: now,
      ...(change.attempts !== undefined ? { attempts: change.attempts } : {}),
      ...(change.runAt ? { run_at: change.runAt } : {}),
    })
    .where(sql<boolean>`id = any(${ids}::bigint[])`)
    .returning(["id", "task", "queue", "attempts"])
    .execute();
}

/** What a page of records may be narrowed by; newest first, keyset by id. */
export interface RecordPage {
  task?: string;
  queue?: string;
  /** Created at or after. */
  from?: Date;
  /** Created before. */
  to?: Date;
  /** Only ids below this one. */
  before?: string;
  /** Only records in this phase. */
  phase?: JobPhase;
  limit: number;
}

/** One page of records, one more than the limit (so the caller knows whether another follows). */
export async function listRecords(db: Db, page: RecordPage): Promise<JobRecordRow[]> {
  let query = db.selectFrom("observing_jobs.job_records as r").selectAll("r").orderBy("r.id", "desc").limit(page.limit + 1);
  for (const condition of pageConditions(page, sql.ref("r.id"))) query = query.where(condition);
  if (page.phase) query = query.where("r.phase", "=", page.phase);
  return query.execute();
}

/** A page's narrowing of the records `r`, the keyset cursor on `id` (the records' id or the one it is joined on). */
function pageConditions(page: Omit<RecordPage, "phase">, id: RawBuilder<unknown>): Array<RawBuilder<boolean>> {
  const conditions: Array<RawBuilder<boolean>> = [];
  if (page.task) conditions.push(sql<boolean>`r.task = ${page.task}`);
  if (page.queue) conditions.push(sql<boolean>`r.queue = ${page.queue}`);
  if (page.from) conditions.push(sql<boolean>`r.created_at >= ${page.from}`);
  if (page.to) conditions.push(sql<boolean>`r.created_at < ${page.to}`);
  if (page.before) conditions.push(sql<boolean>`${id} < ${page.before}`);
  return conditions;
}

/**
 * One page of records that ended in a rare, final state, walking their events newest job first
 * instead of every record. Cancel and discard are final, so the event alone says the state (a
 * filter on the record's phase too would mislead the planner's estimate into scanning every record).
 */
export async function listRecordsEndedBy(db: Db, event: "cancelled" | "discarded", page: Omit<RecordPage, "phase">): Promise<JobRecordRow[]> {
  let query = db
    .selectFrom("observing_jobs.job_events as e")
    .innerJoin("observing_jobs.job_records as r", "r.id", "e.job_id")
    .selectAll("r")
    .where("e.event", "=", event)
    .orderBy("e.job_id", "desc")
    .limit(page.limit + 1);
  for (const condition of pageConditions(page, sql.ref("e.job_id"))) query = query.where(condition);
  return query.execute();
}

export async function findRecords(db: Db, ids: readonly string[]): Promise<JobRecordRow[]> {
  if (ids.length === 0) return [];
  return db.selectFrom("observing_jobs.job_records").selectAll().where(sql<boolean>`id = any(${ids}::bigint[])`).execute();
}

export async function findRecord(db: Db, id: string): Promise<JobRecordRow | undefined> {
  return db.selectFrom("observing_jobs.job_records").selectAll().where("id", "=", id).executeTakeFirst();
}

export async function findEvents(db: Db, id: string) {
  return db.selectFrom("observing_jobs.job_events").selectAll().where("job_id", "=", id).orderBy("id").execute();
}

export async function findNewestIdByKey(db: Db, key: string): Promise<string | null> {
  const row = await db
    .selectFrom("observing_jobs.job_records")
    .select("id")
    .where("job_key", "=", key)
    .orderBy("id", "desc")
    .limit(1)
    .executeTakeFirst();
  return row ? String(row.id) : null;
}

/**
 * Children of a fan-out by recorded phase, plus how many of them run now (from graphile-worker's
 * view: locked and run by their pool, not held in its local queue).
 */
export async function countChildren(db: Db, parentId: string): Promise<{ byPhase: Record<string, number>; running: number } | null> {
  const rows = await db
    .selectFrom("observing_jobs.job_records")
    .select(["phase", (eb) => eb.fn.countAll<string>().as("count")])
    .where("parent_id", "=", parentId)
    .groupBy("phase")
    .execute();
  if (rows.length === 0) return null;
  const byPhase = Object.fromEntries(rows.map((row) => [row.phase, Number(row.count)]));
  if (!byPhase.waiting) return { byPhase, running: 0 };
  const { rows: running } = await sql<{ count: number }>`
    select count(*)::int as count from graphile_worker.jobs j
    where ${runningNow("j")}
      and exists (select 1 from observing_jobs.job_records r where r.id = j.id and r.parent_id = ${parentId}::bigint)`.execute(db);
  return { byPhase, running: running[0]?.count ?? 0 };
}

/** Ids of a fan-out's children that wait (not started), a chunk at a time (keyset by id). */
export async function findWaitingChildren(db: Db, parentId: string, afterId: string | null, limit: number): Promise<string[]> {
  let query = db
    .selectFrom("observing_jobs.job_records")
    .select("id")
    .where("parent_id", "=", parentId)
    .where("phase", "=", "waiting")
    .orderBy("id")
    .limit(limit);
  if (afterId) query = query.where("id", ">", afterId);
  return (await query.execute()).map((row) => String(row.id));
}

/**
 * Retention: succeeded and cancelled records (or dead and discarded ones) that finished before
 * `cutoff`, a batch at a time, with their events. A job finishes after it is created, so the
 * created_at index bounds the scan (no index on finished_at: that column changes when an attempt
 * ends, and indexing it would cost every completion its HOT update).
 */
export async function pruneRecords(trx: Db, phases: readonly JobPhase[], cutoff: Date, limit: number): Promise<Array<{ id: string; phase: JobPhase }>> {
  await recordChangesHere(trx);
  const { rows } = await sql<{ id: string; phase: JobPhase }>`
    delete from observing_jobs.job_records
    where id in (
      select id from observing_jobs.job_records
      where created_at < ${cutoff} and finished_at < ${cutoff} and phase = any(${phases}::text[])
      order by created_at
      limit ${limit}
      for update skip locked
    )
    returning id, phase`.execute(trx);
  if (rows.length === 0) return [];
  const ids = rows.map((row) => row.id);
  await sql`delete from observing_jobs.job_events where job_id = any(${ids}::bigint[])`.execute(trx);
  const dead = rows.filter((row) => row.phase === "dead").map((row) => row.id);
  if (dead.length > 0) await sql`select graphile_worker.complete_jobs(${dead}::bigint[])`.execute(trx);
  return rows;
}

/** Outcome counters older than the chart's window. */
export async function pruneOutcomeCounts(db: Db, before: Date): Promise<number> {
  const result = await db.deleteFrom("observing_jobs.job_outcome_counts").where("minute", "<", before).executeTakeFirst();
  return Number(result.numDeletedRows);
}

export interface OutcomeCount {
  minute: Date;
  succeeded: number;
  failed: number;
}

/** Succeeded jobs and failed attempts per minute in [start, end). */
export async function findOutcomeCounts(db: Db, start: Date, end: Date): Promise<OutcomeCount[]> {
  const { rows } = await sql<OutcomeCount>`
    select minute, sum(succeeded)::int as succeeded, sum(failed)::int as failed
    from observing_jobs.job_outcome_counts
    where minute >= date_trunc('minute', ${start}::timestamptz) and minute < ${end}::timestamptz
    group by minute`.execute(db);
  return rows;
}

/** Jobs that ended since `since`, per end state: succeeded from the counters, the rare others from their events. */
export async function countEndedSince(db: Db, since: Date): Promise<Record<string, number>> {
  const { rows } = await sql<{ state: string; count: number }>`
    select 'succeeded' as state, coalesce(sum(succeeded), 0)::int as count
    from observing_jobs.job_outcome_counts where minute >= date_trunc('minute', ${since}::timestamptz)
    union all
    select case event when 'exhausted' then 'dead' else event end, count(distinct job_id)::int
    from observing_jobs.job_events
    where at >= ${since}::timestamptz and event in ('exhausted', 'cancelled', 'discarded')
    group by event`.execute(db);
  return Object.fromEntries(rows.filter((row) => row.count > 0).map((row) => [row.state, row.count]));
}

export interface CronRunTimes {
  lastRunAt: Date | null;
  lastRunJobId: string | null;
  lastSuccessAt: Date | null;
  lastSuccessJobId: string | null;
}

/** Each crontab entry's (task and payload) last run and last success, in the order asked; kept whatever the retention. */
export async function findCronRunTimes(db: Db, entries: ReadonlyArray<{ task: string; payload: unknown }>): Promise<CronRunTimes[]> {
  if (entries.length === 0) return [];
  const { rows } = await sql<{ n: string; last_run_at: Date | null; last_run_job_id: string | null; last_success_at: Date | null; last_success_job_id: string | null }>`
    select e.n, c.last_run_at, c.last_run_job_id::text, c.last_success_at, c.last_success_job_id::text
    from unnest(${entries.map((entry) => entry.task)}::text[], ${entries.map((entry) => JSON.stringify(entry.payload ?? {}))}::jsonb[])
      with ordinality as e(task, payload, n)
    left join observing_jobs.cron_runs c on c.task = e.task and c.payload = e.payload
    order by e.n`.execute(db);
  return rows.map((row) => ({ lastRunAt: row.last_run_at, lastRunJobId: row.last_run_job_id, lastSuccessAt: row.last_success_at, lastSuccessJobId: row.last_success_job_id }));
}

/**
 * Keeps an attempt's result with the job's record, while the pool still holds the job: once its
 * pool was declared dead and the job released, this changes nothing. Written just before
 * graphile-worker's completion; false when nothing was written (released, or no record: a job
 * added by plain SQL has none until its first attempt ends).
 */
export async function recordResult(db: Db, attempt: { jobId: string; poolId: string; attempt: number }, resultJson: string): Promise<boolean> {
  const result = await sql`
    update observing_jobs.job_records
    set result = ${resultJson}::jsonb, result_worker_id = ${attempt.poolId}, result_attempt = ${attempt.attempt}
    where id = ${attempt.jobId}::bigint
      and exists (select 1 from graphile_worker.jobs j where j.id = ${attempt.jobId}::bigint and j.locked_by = ${attempt.poolId})`.execute(db);
  return Number(result.numAffectedRows ?? 0) > 0;
}

/**
 * The job's result when the attempt that wrote it is the one that succeeded; null otherwise (the
 * job has not succeeded, returned nothing, or the result is an abandoned attempt's).
 */
export function resultOf(record: Pick<JobRecordRow, "phase" | "result" | "result_worker_id" | "result_attempt" | "worker_id" | "attempts">): unknown {
  if (record.phase !== "succeeded" || record.result === null || record.result === undefined) return null;
  return record.result_worker_id === record.worker_id && record.result_attempt === record.attempts ? record.result : null;
}

/** Asks for a NOTIFY when the job ends (migration 0016); its phase now, or null when it has no record. */
export async function askToBeNotifiedOfEnd(db: Db, jobId: string): Promise<JobPhase | null> {
  const { rows } = await sql<{ phase: JobPhase }>`
    update observing_jobs.job_records set notify_on_end = true where id = ${jobId}::bigint returning phase`.execute(db);
  return rows[0]?.phase ?? null;
}

/** Of these jobs, those whose record has ended (not waiting): the slow fallback of waits for ends. */
export async function findEndedAmong(db: Db, ids: readonly string[]): Promise<string[]> {
  if (ids.length === 0) return [];
  const { rows } = await sql<{ id: string }>`
    select id::text as id from observing_jobs.job_records where id = any(${[...ids]}::bigint[]) and phase <> 'waiting'`.execute(db);
  return rows.map((row) => row.id);
}
