/**
 * What the service adds to a job's history while it runs. The record's state is kept by triggers
 * inside graphile-worker's own statements (migration 0008), so an ordinary attempt writes nothing
 * here: only what graphile-worker does not know is written, and only when it happens (a failed
 * attempt's stack and duration, a failing onExhausted hook, an attempt abandoned because its pool
 * was declared dead, a deferral an upstream asked for). A failure's event is written before the
 * failure reaches graphile-worker, so the event always precedes the failure it explains.
 */
import { sql } from "kysely";
import type { Db } from "../db/database.ts";
import { insertEvents } from "../db/repositories/job-records.ts";
import type { Logger } from "../observability/logger.ts";
import { sanitizeText } from "../storable-text.ts";
import type { JobSnapshot } from "../worker/attempt.ts";
import { HISTORY_STACK_MAX_CHARS } from "./limits.ts";

export class AttemptHistory {
  readonly #db: Db;
  readonly #logger: Logger;

  constructor(db: Db, logger: Logger) {
    this.#db = db;
    this.#logger = logger.child({ component: "job-history" });
  }

  /**
   * Whether this failure ends the job: graphile-worker's row says so, not the attempt's snapshot
   * (a keyed re-enqueue while it runs, or remove_job, sets its attempts to the maximum).
   */
  async isLastAttempt(job: JobSnapshot): Promise<boolean> {
    try {
      const { rows } = await sql<{ last: boolean }>`
        select attempts >= max_attempts as last from graphile_worker.jobs where id = ${job.id}::bigint`.execute(this.#db);
      return rows[0]?.last ?? job.attempt >= job.maxAttempts;
    } catch (error) {
      this.#logger.warn({ err: error, jobId: job.id }, "could not read the job's attempts; judging by the attempt's own count");
      return job.attempt >= job.maxAttempts;
    }
  }

  /** A failed attempt's event (at when it ended), with its stack and when the next attempt runs (null when none will). */
  async failed(job: JobSnapshot, error: unknown, durationMs: number, last: boolean, at: Date): Promise<void> {
    await this.#write(job, {
      at,
      event: "failed",
      ...describeError(error),
      durationMs,
      runAt: last ? null : nextRunAt(job, at),
    });
  }

  async hookFailed(job: JobSnapshot, error: unknown): Promise<void> {
    await this.#write(job, { event: "hook_failed", ...describeError(error) });
  }

  /**
   * The attempt's pool was declared dead while it ran: the job went back to the queue (its rescue
   * wrote `rescued`) and ran elsewhere; this attempt's outcome was discarded. The record belongs to
   * the job's next attempt and is not touched.
   */
  async abandoned(job: JobSnapshot, reason: string, durationMs: number, workerId: string | null): Promise<void> {
    await this.#write(job, { event: "abandoned", error: sanitizeText(reason), stack: null, durationMs, workerId });
  }

  /**
   * An upstream asked to wait (Retry-After): the job is due again at `runAt` with this attempt given
   * back. The record's new state was written by the trigger on the deferral's own statement.
   */
  async deferred(job: JobSnapshot, error: unknown, runAt: Date, durationMs: number): Promise<void> {
    await this.#write(job, { event: "deferred", ...describeError(error), durationMs, runAt });
  }

  async #write(
    job: JobSnapshot,
    event: { event: "failed" | "hook_failed" | "abandoned" | "deferred"; error: string; stack: string | null; durationMs?: number; runAt?: Date | null; at?: Date; workerId?: string | null },
  ): Promise<void> {
    try {
      await insertEvents(this.#db, [{ jobId: job.id, task: job.task, queue: job.queue, attempt: job.attempt, traceId: job.traceId, ...event }]);
    } catch (error) {
      // The record's state is graphile-worker's (the triggers); only this event's detail is lost.
      this.#logger.warn({ err: error, jobId: job.id, event: event.event }, "could not record the attempt's error detail in job history");
    }
  }
}

/** An error as history keeps it: text that PostgreSQL stores (no NUL, no lone surrogate), stack bounded. */
export function describeError(error: unknown): { error: string; stack: string | null } {
  if (error instanceof Error) {
    return { error: sanitizeText(error.message || error.name), stack: error.stack ? sanitizeText(error.stack.slice(0, HISTORY_STACK_MAX_CHARS)) : null };
  }
  return { error: sanitizeText(String(error)), stack: null };
}

/** graphile-worker's backoff: `greatest(now(), run_at) + exp(least(attempts, 10))` seconds. */
export function nextRunAt(job: Pick<JobSnapshot, "attempt" | "runAt">, now: Date): Date {
  const base = Math.max(now.getTime(), job.runAt.getTime());
  return new Date(base + Math.exp(Math.min(job.attempt, 10)) * 1000);
}
