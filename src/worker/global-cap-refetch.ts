/**
 * A global cap's worker fetches its next job right after it hands the finished one to
 * graphile-worker's completion (or failure) batcher, before that statement commits. With every slot
 * taken, that fetch finds its own slot still held (migration 0018_global_caps) and the worker would
 * sleep until its next poll while a slot stands free. So a worker of a global cap's runner whose
 * fetch right after a job finds nothing fetches again a moment later, and again after longer waits
 * while it still finds nothing (the end of the job may be slow to commit on a busy database), until
 * a job starts or the waits reach the poll interval. The instance that freed a slot takes it again
 * at once, so the slots stay busy while jobs wait; other instances' workers find a free slot at
 * their next poll or new job.
 */
import type { Worker, WorkerEvents } from "graphile-worker";

/** The waits before each fetch again, after a job's end: the first covers the completion batch (a delay of 0, one round trip). */
export const REFETCH_DELAYS_MS = [50, 150, 400, 1000] as const;

export function refetchAfterJobEnds(events: WorkerEvents, isGlobalCapPool: (poolId: string) => boolean, delaysMs: readonly number[] = REFETCH_DELAYS_MS): void {
  // Per worker whose last job ended and that has not started another: the next wait's index.
  const retries = new WeakMap<Worker, number>();
  events.on("job:complete", ({ worker }) => {
    if (isGlobalCapPool(worker.workerPool.id)) retries.set(worker, 0);
  });
  events.on("job:start", ({ worker }) => retries.delete(worker));
  events.on("worker:getJob:empty", ({ worker }) => {
    const index = retries.get(worker);
    if (index === undefined) return;
    if (index >= delaysMs.length) {
      retries.delete(worker);
      return;
    }
    retries.set(worker, index + 1);
    setTimeout(() => {
      try {
        worker.nudge();
      } catch {
        // The worker was released meanwhile (its pool is stopping).
      }
    }, delaysMs[index]).unref();
  });
}
