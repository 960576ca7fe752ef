/**
 * Which jobs each worker pool of this process is running, recorded on every attempt, so that when
 * a pool ends (shutdown, restart) the attempts it never finished can be given back to the queue
 * (src/reliability/shutdown.ts).
 */
/**
 * The jobs each pool of this process is running. A job leaves when its attempt ends on its own
 * (success or failure); one interrupted by shutdown stays until its pool has ended, and is then
 * returned to the queue.
 */
export class InFlightJobs {
  /** Pool id → job id → when the job was due (it keeps its place in the queue when returned). */
  readonly #byPool = new Map<string, Map<string, Date>>();

  began(poolId: string, jobId: string, runAt: Date): void {
    const jobs = this.#byPool.get(poolId) ?? new Map<string, Date>();
    jobs.set(jobId, runAt);
    this.#byPool.set(poolId, jobs);
  }

  finished(poolId: string, jobId: string): void {
    this.#byPool.get(poolId)?.delete(jobId);
  }

  /** The jobs of a pool that never finished, with when they were due. */
  unfinished(poolId: string): ReadonlyMap<string, Date> {
    return new Map(this.#byPool.get(poolId));
  }

  /** Forgets an ended pool once its jobs are settled. */
  forget(poolId: string): void {
    this.#byPool.delete(poolId);
  }
}
