/**
 * Shutdown tuned to Cloud Run, which sends SIGTERM and kills the instance about 10 s later:
 *
 *   t = 0                        SIGTERM: readiness answers 503 "shutting down"; runners fetch no new
 *                                jobs; cron stops; heartbeats go on (the instance is alive)
 *   t < SHUTDOWN_ABORT_AFTER_MS  running jobs may finish normally
 *   t = SHUTDOWN_ABORT_AFTER_MS  the jobs' abort signal fires; each attempt fails at once with
 *                                TaskInterruptedError, even if its handler ignores the signal
 *   t = SHUTDOWN_TIMEOUT_MS      pools still not stopped are shut down forcefully
 *   as each pool ends            its unfinished jobs are returned to the queue at their old place
 *                                (their original run_at), with the interrupted attempt given back and a `rescued` event (actor
 *                                "shutdown"); jobs still locked by it are force-unlocked; its
 *                                heartbeat row becomes `stopped`
 *   then                         HTTP closes, the database pool closes
 *   t = SHUTDOWN_TIMEOUT_MS + 1 s  the process exits, finished or not (main.ts)
 */
import type { Db } from "../db/database.ts";
import type { Logger } from "../observability/logger.ts";
import { markPoolStopped, type HeartbeatWriter } from "./heartbeat.ts";
import { findJobsToRelease, releaseJobs } from "./rescue.ts";
import type { InFlightJobs } from "../worker/in-flight-jobs.ts";
import type { PoolEndCause } from "../worker/supervisor.ts";

/** How long after the shutdown deadline the process exits regardless. */
export const EXIT_GRACE_MS = 1000;

export interface PoolSettlement {
  db: Db;
  heartbeats: Pick<HeartbeatWriter, "unregister">;
  inFlight: InFlightJobs;
  logger: Logger;
}

/**
 * Called once a pool of this process has ended: nothing of it runs any more, so every job it left
 * locked or interrupted is released now instead of waiting for the sweeper. A pool that was
 * abandoned (declared dead) had its jobs released by the sweeper already: only what it may still
 * hold is unlocked, and nothing is given back, because another pool may be running those jobs.
 */
export async function settleEndedPool(deps: PoolSettlement, poolId: string, cause: PoolEndCause): Promise<void> {
  const { db, heartbeats, inFlight, logger } = deps;
  heartbeats.unregister(poolId);
  // A pool declared dead had its jobs released by whoever declared it (they wrote `rescued`).
  const unfinished = cause === "abandoned" ? new Map<string, Date>() : inFlight.unfinished(poolId);
  const jobs = await findJobsToRelease(db, [poolId], new Map([...unfinished.keys()].map((id) => [id, poolId])));
  await db.transaction().execute(async (trx) => {
    await releaseJobs(trx, [poolId], jobs, {
      actor: cause === "shutdown" ? "shutdown" : "supervisor",
      reason: (job) =>
        unfinished.has(job.id)
          ? `interrupted when worker pool ${poolId} stopped (${cause}); returned to the queue with its attempt given back`
          : `still locked by worker pool ${poolId} when it stopped (${cause}): not started (its local queue) or finished with its completion not written; returned with its attempt given back`,
      // Interrupted ones keep their place in the queue; the others never ran, or ran to the end.
      // A pool declared dead gives nothing back: another pool may be running those jobs.
      giveBackAttempt: cause === "abandoned" ? new Map() : new Map<string, Date | null>([...jobs.map((job) => [job.id, null] as const), ...unfinished]),
      startedAt: inFlight.startedAt(unfinished.keys()),
    });
    await markPoolStopped(trx, poolId);
  });
  inFlight.forget(poolId);
  if (jobs.length > 0) logger.warn({ poolId, cause, jobs: jobs.map((job) => job.id) }, "returned the unfinished jobs of a stopped worker pool to the queue");
}
