/**
 * The dead-letter as operators work it: dead jobs grouped by task and error, and bulk actions on
 * a group. Dead jobs stay in graphile-worker's table until retried, discarded or pruned, so its
 * view is the truth; both read the newest of them with a bound, so a dead-letter of any size
 * costs the same per page view.
 */
import { sql } from "kysely";
import type { Db } from "../../../db/database.ts";
import { discardJob, IllegalTransitionError, JobNotFoundError, retryJob } from "../../../lifecycle/jobs.ts";

/** Dead jobs looked at to build the groups. */
export const DEAD_LETTER_SCAN_LIMIT = 10_000;
/** Jobs one bulk action touches; pressing again handles the next ones. */
export const BULK_ACTION_LIMIT = 500;

export interface DeadLetterGroup {
  task: string;
  /** The last error the jobs died with (all of them share it). */
  error: string;
  /** Names the group in forms: a digest of the error, so any text (newlines included) round-trips. */
  errorKey: string;
  count: number;
  newestJobId: string;
  newestFinishedAt: Date | null;
}

export async function findDeadLetterGroups(db: Db): Promise<{ groups: DeadLetterGroup[]; scanned: number; capped: boolean }> {
  const { rows } = await sql<{ task: string; error: string; error_key: string; count: number; newest_id: string; newest_finished_at: Date | null }>`
    select task, coalesce(last_error, '') as error, md5(coalesce(last_error, '')) as error_key, count(*)::int as count,
      max(id)::text as newest_id, max(finished_at) as newest_finished_at
    from (
      select j.id, j.task_identifier as task, j.last_error, r.finished_at
      from graphile_worker.jobs j left join observing_jobs.job_records r on r.id = j.id
      where j.locked_at is null and j.attempts >= j.max_attempts order by j.id desc limit ${DEAD_LETTER_SCAN_LIMIT}
    ) as dead
    group by task, coalesce(last_error, '')
    order by count(*) desc, max(id) desc`.execute(db);
  const scanned = rows.reduce((sum, row) => sum + row.count, 0);
  return {
    groups: rows.map((row) => ({
      task: row.task,
      error: row.error,
      errorKey: row.error_key,
      count: row.count,
      newestJobId: row.newest_id,
      newestFinishedAt: row.newest_finished_at,
    })),
    scanned,
    capped: scanned >= DEAD_LETTER_SCAN_LIMIT,
  };
}

export interface BulkResult {
  done: number;
  /** Jobs whose state changed before the action reached them (retried, started, discarded by someone else). */
  skipped: number;
  /** More of the group is left than one action handles. */
  more: boolean;
}

/** Retries or discards the dead jobs of one group, each recorded in history with the operator. */
export async function actOnDeadLetterGroup(db: Db, group: { task: string; errorKey: string }, action: "retry" | "discard", actor: string): Promise<BulkResult> {
  const { rows } = await sql<{ id: string }>`
    select id::text as id from graphile_worker.jobs
    where locked_at is null and attempts >= max_attempts and task_identifier = ${group.task}
      and md5(coalesce(last_error, '')) = ${group.errorKey}
    order by id desc limit ${BULK_ACTION_LIMIT + 1}`.execute(db);
  const act = action === "retry" ? retryJob : discardJob;
  let done = 0;
  let skipped = 0;
  for (const { id } of rows.slice(0, BULK_ACTION_LIMIT)) {
    try {
      await act(db, id, actor);
      done += 1;
    } catch (error) {
      if (!(error instanceof IllegalTransitionError || error instanceof JobNotFoundError)) throw error;
      skipped += 1;
    }
  }
  return { done, skipped, more: rows.length > BULK_ACTION_LIMIT };
}
