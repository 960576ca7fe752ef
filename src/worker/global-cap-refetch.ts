/**
 * A global cap's worker fetches its next job right after it hands the finished one to
 * graphile-worker's completion (or failure) batcher, before that statement commits. With every slot
 * taken, that fetch finds its own slot still held (migration 0018_global_caps) and the worker would
 * sleep until its next poll while a slot stands free. So a worker of a global cap's runner whose
 * fetch right after a job finds nothing fetches once more a moment later, when the end of the job has
 * committed. The instance that freed a slot takes it again at once, so the slots stay busy while jobs
 * wait; other instances' workers find a free slot at their next poll or new job.
 */
import type { Worker, WorkerEvents } from "graphile-worker";

/** Long enough for the completion batch (a delay of 0, one round trip) to commit on a busy machine. */
export const REFETCH_DELAY_MS = 50;

export function refetchAfterJobEnds(events: WorkerEvents, isGlobalCapPool: (poolId: string) => boolean, delayMs = REFETCH_DELAY_MS): void {
  const justEnded = new WeakSet<Worker>();
  events.on("job:complete", ({ worker }) => {
    if (isGlobalCapPool(worker.workerPool.id)) justEnded.add(worker);
  });
  events.on("job:start", ({ worker }) => justEnded.delete(worker));
  events.on("worker:getJob:empty", ({ worker }) => {
    if (!justEnded.delete(worker)) return;
    setTimeout(() => {
      try {
        worker.nudge();
      } catch {
        // The worker was released meanwhile (its pool is stopping).
      }
    }, delayMs).unref();
  });
}
