/**
 * Which jobs each worker pool of this process is running, recorded on every attempt. A job leaves
 * when its attempt ends on its own (success or failure); one interrupted by shutdown or a restart
 * stays until its pool has ended, and is then given back to the queue
 * (src/reliability/pool-settlement.ts).
 */
export class InFlightJobs {
  /** Pool id → job id → when the job was due (it keeps its place in the queue when returned). */
  readonly #byPool = new Map<string, Map<string, Date>>();
  /** Job id → when its current attempt started (a rescue's event says how long it had run). */
  readonly #startedAt = new Map<string, Date>();

  began(poolId: string, jobId: string, runAt: Date): void {
    this.#startedAt.set(jobId, new Date());
    const jobs = this.#byPool.get(poolId) ?? new Map<string, Date>();
    jobs.set(jobId, runAt);
    this.#byPool.set(poolId, jobs);
  }

  finished(poolId: string, jobId: string): void {
    this.#byPool.get(poolId)?.delete(jobId);
    this.#startedAt.delete(jobId);
  }

  /** When the current attempt of each of these jobs started. */
  startedAt(jobIds: Iterable<string>): ReadonlyMap<string, Date> {
    return new Map([...jobIds].flatMap((id) => (this.#startedAt.has(id) ? [[id, this.#startedAt.get(id)!] as const] : [])));
  }

  /** The jobs of a pool that never finished, with when they were due. */
  unfinished(poolId: string): ReadonlyMap<string, Date> {
    return new Map(this.#byPool.get(poolId));
  }

  /** Forgets an ended pool once its jobs are settled. */
  forget(poolId: string): void {
    for (const jobId of this.#byPool.get(poolId)?.keys() ?? []) this.#startedAt.delete(jobId);
    this.#byPool.delete(poolId);
  }
}
