/**
 * Queue depth per task and queue, from graphile-worker's public `jobs` view. Counting needs a pass
 * over the pending jobs, so the figures are cached for a few seconds and shared by the API, the
 * dashboard and metrics: however often they are read, the database sees one query per interval.
 */
import { cachedRead } from "../db/cached-read.ts";
import type { Db } from "../db/database.ts";
import { countLiveJobs, type LiveCounts } from "../db/repositories/live-jobs.ts";

/**
 * One task and queue's jobs per state. `ready` counts the due jobs that wait, those held in a
 * pool's local queue included; `running` only the jobs their pool's heartbeat says it runs.
 */
export type QueueDepth = LiveCounts;

export interface QueueStats {
  read(): Promise<{ at: Date; depths: QueueDepth[] }>;
}

export function makeQueueStats(db: Db, maxAgeMs = 5000): QueueStats {
  const read = cachedRead(async () => {
    const depths = await countLiveJobs(db);
    return { at: new Date(), depths };
  }, maxAgeMs);
  return { read };
}
