/**
 * Waiting for jobs to end, for callers that enqueue and want the outcome (`POST /jobs/{task}?wait=`).
 * One LISTEN connection per process, opened on the first wait and shared by every waiter: a waiter
 * asks for its job's end to be NOTIFYed (migration 0016 marks the record, and a trigger notifies
 * when its phase leaves `waiting`), so jobs nobody waits for cost nothing. A slow poll of the
 * waited-for records covers a lost connection or a missed notification. No waiter holds a pooled
 * connection while it waits.
 */
import type pg from "pg";
import type { Db } from "../db/database.ts";
import { askToBeNotifiedOfEnd, findEndedAmong } from "../db/repositories/job-records.ts";
import type { Logger } from "../observability/logger.ts";

/** The NOTIFY channel of migration 0016's trigger; the payload is the job's id. */
export const JOB_ENDED_CHANNEL = "observing_jobs_job_ended";

/** How often the waited-for records are read in case a notification was missed. @defaultValue 2000 */
export const END_POLL_INTERVAL_MS = 2000;

export interface JobEndWaitsOptions {
  db: Db;
  logger: Logger;
  /** A new, unconnected client for the LISTEN connection (not one of the pool's). */
  makeClient: () => pg.Client;
  pollIntervalMs?: number;
}

export class JobEndWaits {
  readonly #options: JobEndWaitsOptions;
  /** Per job, how to settle each of its waits: true when it ended, false when the wait is given up. */
  readonly #waiting = new Map<string, Set<(ended: boolean) => void>>();
  /** Statements in flight (arming a wait, a poll): close() lets them finish, so nothing outlives it. */
  readonly #inFlight = new Set<Promise<unknown>>();
  #listener: Promise<pg.Client | null> | null = null;
  #poll: NodeJS.Timeout | null = null;
  #closed = false;

  constructor(options: JobEndWaitsOptions) {
    this.#options = options;
  }

  /** Jobs waited for now (for tests and metrics). */
  get waiters(): number {
    let count = 0;
    for (const set of this.#waiting.values()) count += set.size;
    return count;
  }

  /**
   * True once the job has ended (succeeded, dead, cancelled or discarded), false when `timeoutMs`
   * passed first or `signal` aborted (the caller went away). Never throws: a database problem
   * while arming the wait leaves it to the poll and the time limit.
   */
  waitForEnd(jobId: string, timeoutMs: number, signal: AbortSignal): Promise<boolean> {
    if (signal.aborted || this.#closed) return Promise.resolve(false);
    return new Promise<boolean>((resolve) => {
      let settled = false;
      const finish = (ended: boolean) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        signal.removeEventListener("abort", onAbort);
        this.#remove(jobId, finish);
        resolve(ended);
      };
      const onAbort = () => finish(false);
      const timer = setTimeout(() => finish(false), timeoutMs);
      signal.addEventListener("abort", onAbort, { once: true });
      this.#add(jobId, finish);
      this.#track(
        this.#arm(jobId).then(
          (ended) => ended && finish(true),
          (error: unknown) => this.#options.logger.warn({ err: error, jobId }, "could not arm the wait for a job's end; polling for it"),
        ),
      );
    });
  }

  /** Ends every wait (as not ended) and the LISTEN connection. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const set of [...this.#waiting.values()]) for (const settle of [...set]) settle(false);
    this.#waiting.clear();
    this.#stopPolling();
    await Promise.allSettled([...this.#inFlight]);
    const listener = await this.#listener?.catch(() => null);
    this.#listener = null;
    await listener?.end().catch(() => {});
  }

  #track(work: Promise<unknown>): void {
    this.#inFlight.add(work);
    void work.finally(() => this.#inFlight.delete(work));
  }

  /** LISTEN first, then mark the record: an end after the mark is notified, one before it is seen in the phase the mark returns. */
  async #arm(jobId: string): Promise<boolean> {
    await this.#listen();
    const phase = await askToBeNotifiedOfEnd(this.#options.db, jobId);
    return phase !== null && phase !== "waiting";
  }

  #add(jobId: string, settle: (ended: boolean) => void): void {
    let set = this.#waiting.get(jobId);
    if (!set) this.#waiting.set(jobId, (set = new Set()));
    set.add(settle);
    this.#poll ??= setInterval(() => this.#track(this.#pollOnce()), this.#options.pollIntervalMs ?? END_POLL_INTERVAL_MS).unref();
  }

  #remove(jobId: string, settle: (ended: boolean) => void): void {
    const set = this.#waiting.get(jobId);
    set?.delete(settle);
    if (set?.size === 0) this.#waiting.delete(jobId);
    if (this.#waiting.size === 0) this.#stopPolling();
  }

  #stopPolling(): void {
    if (this.#poll) clearInterval(this.#poll);
    this.#poll = null;
  }

  #wake(jobId: string): void {
    for (const settle of [...(this.#waiting.get(jobId) ?? [])]) settle(true);
  }

  async #pollOnce(): Promise<void> {
    const ids = [...this.#waiting.keys()];
    if (ids.length === 0) return;
    try {
      // Reconnects a LISTEN connection that was lost (the poll covered the gap).
      void this.#listen();
      for (const id of await findEndedAmong(this.#options.db, ids)) this.#wake(id);
    } catch (error) {
      this.#options.logger.warn({ err: error }, "could not poll for the ends of waited-for jobs");
    }
  }

  /** The shared LISTEN connection, opened once; null (polling only) while it cannot be opened. */
  #listen(): Promise<pg.Client | null> {
    if (this.#closed) return Promise.resolve(null);
    if (this.#listener) return this.#listener;
    const client = this.#options.makeClient();
    let opening: Promise<pg.Client | null> | null = null;
    let lostAlready = false;
    // An error and the end that follows it are one loss; a later connection is not this one's to drop.
    const lost = (error?: Error) => {
      if (lostAlready || this.#closed) return;
      lostAlready = true;
      this.#options.logger.warn({ err: error }, "the LISTEN connection for job ends was lost or could not be opened; polling until it is back");
      if (this.#listener === opening) this.#listener = null;
      client.end().catch(() => {});
    };
    client.on("error", lost);
    client.on("end", () => lost());
    client.on("notification", (message) => {
      if (message.channel === JOB_ENDED_CHANNEL && message.payload) this.#wake(message.payload);
    });
    opening = (async () => {
      try {
        await client.connect();
        await client.query(`listen ${JOB_ENDED_CHANNEL}`);
        return client;
      } catch (error) {
        lost(error as Error);
        return null;
      }
    })();
    this.#listener = opening;
    return opening;
  }
}
