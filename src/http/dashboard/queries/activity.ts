/**
 * What happened recently, for the overview: outcomes per interval and jobs finished per state.
 * Read from the per-minute outcome counters and the end-state events (migration 0008), so the
 * cost follows the recent traffic, not the size of the history.
 */
import type { Db } from "../../../db/database.ts";
import { countEndedSince, findOutcomeCounts } from "../../../db/repositories/job-records.ts";

/** Jobs that reached an end state (succeeded, dead, cancelled, discarded) since a time, per state. */
export { countEndedSince as countFinishedSince };

export interface OutcomeBucket {
  start: Date;
  succeeded: number;
  /** Failed attempts (a retried job counts once per failure). */
  failed: number;
}

/** Succeeded jobs and failed attempts in `buckets` intervals of `bucketMs` ending at `end`, oldest first, empty intervals included. */
export async function findRecentOutcomes(db: Db, end: Date, buckets = 12, bucketMs = 5 * 60_000): Promise<OutcomeBucket[]> {
  const start = new Date(end.getTime() - buckets * bucketMs);
  const counts = await findOutcomeCounts(db, start, end);
  const result = Array.from({ length: buckets }, (_, index) => ({ start: new Date(start.getTime() + index * bucketMs), succeeded: 0, failed: 0 }));
  for (const count of counts) {
    const bucket = result[Math.floor((count.minute.getTime() - start.getTime()) / bucketMs)];
    if (!bucket) continue;
    bucket.succeeded += count.succeeded;
    bucket.failed += count.failed;
  }
  return result;
}

