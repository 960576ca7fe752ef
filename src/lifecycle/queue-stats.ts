/**
 * Queue depth per task and queue, from graphile-worker's public `jobs` view. Counting needs a pass
 * over the pending jobs, so the figures are cached for a few seconds and shared by the API, the
 * dashboard and metrics: however often they are read, the database sees one query per interval.
 */
import { sql } from "kysely";
import { cachedRead } from "../db/cached-read.ts";
import type { Db } from "../db/database.ts";

export interface QueueDepth {
  task: string;
  queue: string | null;
  ready: number;
  scheduled: number;
  running: number;
  retryWait: number;
  dead: number;
  /** Seconds the oldest ready job has waited past its run time; null when none is ready. */
  oldestReadyAgeSeconds: number | null;
}

export interface QueueStats {
  read(): Promise<{ at: Date; depths: QueueDepth[] }>;
}

export function makeQueueStats(db: Db, maxAgeMs = 5000): QueueStats {
  const read = cachedRead(async () => {
    const depths = await countJobs(db);
    return { at: new Date(), depths };
  }, maxAgeMs);
  return { read };
}

async function countJobs(db: Db): Promise<QueueDepth[]> {
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
      count(*) filter (where locked_at is null and attempts < max_attempts and run_at <= now())::int as ready,
      count(*) filter (where locked_at is null and attempts = 0 and run_at > now())::int as scheduled,
      count(*) filter (where locked_at is not null)::int as running,
      count(*) filter (where locked_at is null and attempts > 0 and attempts < max_attempts and run_at > now())::int as retry_wait,
      count(*) filter (where locked_at is null and attempts >= max_attempts)::int as dead,
      extract(epoch from now() - min(run_at) filter (where locked_at is null and attempts < max_attempts and run_at <= now()))::float8
        as oldest_ready_age
    from graphile_worker.jobs
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
