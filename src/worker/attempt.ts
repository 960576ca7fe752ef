/**
 * What the worker tells the rest of the service about each attempt as it happens. A leaf module:
 * the worker, job history and metrics all import it, and it imports none of them.
 */

/** What history and metrics need to know about the job an attempt belongs to. */
export interface JobSnapshot {
  id: string;
  task: string;
  queue: string | null;
  attempt: number;
  maxAttempts: number;
  runAt: Date;
  createdAt: Date;
  priority: number;
  key: string | null;
  /** The attempt's trace (the enqueuer's trace when it was traced), for history rows. */
  traceId: string | null;
}

/**
 * Told about every attempt as it happens (metrics). Must not block or throw. The job's record is
 * not an observer: graphile-worker's own statements keep it (src/lifecycle/history.ts).
 */
export interface AttemptObserver {
  started(job: JobSnapshot, payload: unknown, workerId: string | null): void;
  succeeded(job: JobSnapshot, durationMs: number): void;
  /** A failed attempt; when `job.attempt >= job.maxAttempts` the job is now dead. */
  failed(job: JobSnapshot, error: unknown, durationMs: number): void;
  hookFailed(job: JobSnapshot, error: unknown): void;
  /**
   * The attempt's pool was declared dead while it ran: the job was released to other pools, and
   * this attempt's outcome (success or failure) is discarded. Neither succeeded nor failed.
   */
  abandoned(job: JobSnapshot, reason: string, durationMs: number): void;
  /** An upstream asked to wait: the job is due again later, with this attempt given back. */
  deferred(job: JobSnapshot, error: unknown, durationMs: number): void;
}
