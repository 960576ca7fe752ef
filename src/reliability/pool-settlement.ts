/**
 * What a pool of this process leaves when it ends (at shutdown, when its supervisor restarts it, or
 * when it was declared dead): every job it left locked or interrupted is released at once, instead
 * of waiting for the sweeper (rescue.ts), which does the same for the pools of instances that died.
 */
import type { Db } from "../db/database.ts";
import type { Logger } from "../observability/logger.ts";
import type { InFlightJobs } from "../worker/in-flight-jobs.ts";
import type { PoolEndCause } from "../worker/supervisor.ts";
import { markPoolStopped, type HeartbeatWriter } from "./heartbeat.ts";
import { findJobsToRelease, releaseJobs } from "./rescue.ts";

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
