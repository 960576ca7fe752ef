/**
 * What happened recently, for the overview: outcomes per interval and jobs finished per state.
 * Every query is bounded in time and served by an index (0007's outcome index on job_events,
 * 0002's finished_at index on job_records), so its cost follows the recent traffic, not the
 * size of the history.
 */
import { sql } from "kysely";
import type { Db } from "../db/database.ts";

export interface OutcomeBucket {
  start: Date;
  succeeded: number;
  /** Failed attempts (a retried job counts once per failure). */
  failed: number;
}

/** Succeeded jobs and failed attempts in `buckets` intervals of `bucketMs` ending at `end`, oldest first, empty intervals included. */
export async function findRecentOutcomes(db: Db, end: Date, buckets = 12, bucketMs = 5 * 60_000): Promise<OutcomeBucket[]> {
  const start = new Date(end.getTime() - buckets * bucketMs);
  const { rows } = await sql<{ bucket: number; succeeded: number; failed: number }>`
    select floor(extract(epoch from at - ${start}::timestamptz) * 1000 / ${bucketMs})::int as bucket,
      count(*) filter (where event = 'succeeded')::int as succeeded,
      count(*) filter (where event = 'failed')::int as failed
    from observing_jobs.job_events
    where event in ('succeeded', 'failed') and at >= ${start}::timestamptz and at < ${end}::timestamptz
    group by 1`.execute(db);
  const byBucket = new Map(rows.map((row) => [row.bucket, row]));
  return Array.from({ length: buckets }, (_, index) => ({
    start: new Date(start.getTime() + index * bucketMs),
    succeeded: byBucket.get(index)?.succeeded ?? 0,
    failed: byBucket.get(index)?.failed ?? 0,
  }));
}

/** Jobs that reached an end state (succeeded, dead, cancelled, discarded) since `since`, per state. */
export async function countFinishedSince(db: Db, since: Date): Promise<Record<string, number>> {
  const rows = await db
    .selectFrom("observing_jobs.job_records")
    .select(["phase", (eb) => eb.fn.countAll<string>().as("count")])
    .where("finished_at", ">=", since)
    .groupBy("phase")
    .execute();
  return Object.fromEntries(rows.map((row) => [row.phase, Number(row.count)]));
}
