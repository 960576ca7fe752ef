/**
 * Keeps one graphile-worker runner running. graphile-worker recovers from some database trouble by
 * itself (job fetches retry every poll, LISTEN reconnects with backoff, cron restarts and back-fills),
 * but a pool ends for good when recording a job's completion or failure fails: in 0.18 its batch
 * retry loop gives up after the first error (`break` in `batch()`, graphile/worker#636), so one
 * refused connection during a database restart ends the pool, leaving that job locked. A pool this
 * service stopped because it was declared dead ends too. The supervisor then settles the ended pool
 * (its jobs go back to the queue, retried in the background while the database is away) and starts a
 * new runner, with a new pool id, after an exponential backoff.
 *
 * Any end of `runner.promise` that was not asked for counts as a failure, resolved or rejected:
 * since 0.17 it resolves when the pool exits with an error (graphile/worker#635), so a rejection
 * alone would miss the case above.
 *
 * A pool that shuts itself down may also never finish: after such a failure its batcher's pending
 * count can go wrong (the backpressure `holdup()` raises is never cleared, also graphile/worker#636),
 * and the graceful shutdown then waits forever for the batcher, with LISTEN already closed. So a pool
 * that starts shutting down without being asked is shut down forcefully after `abandonAfterMs`, and a
 * pool shut down forcefully (that way, at the shutdown deadline, or declared dead) counts as ended from
 * then on, whatever its runner reports: it is settled, and its runner restarted unless stopping.
 *
 * Both issues were open upstream when this was written. The restarts stay useful after a fix (a
 * pool declared dead still ends); the forceful shutdown after `abandonAfterMs` may go once a release
 * fixes #636.
 *
 * A third one comes with a local queue: when a pool that is stopping (its local queue released)
 * cannot return the queue's jobs to the database (it is restarting), 0.18's `LocalQueue.returnJobs`
 * throws from a promise handler nobody awaits, and the unhandled rejection ends the process. Those
 * jobs are still locked by the ended pool, which this supervisor settles like any other (they go
 * back to the queue with their attempt), so that one rejection is logged instead
 * (guardLocalQueueReturn); every other unhandled rejection still ends the process. No upstream issue
 * covered it when this was written (graphile/worker's tracker searched on 2026-12-02): the guard
 * may go once `returnJobs` handles its own failure.
 */
import type { Runner, WorkerEvents, WorkerPool } from "graphile-worker";
import type { Logger } from "../observability/logger.ts";

/**
 * Why a pool ended: the service is stopping; the runner ended on its own and is restarted; or the
 * pool was declared dead and abandoned (its jobs were already released by the sweeper).
 */
export type PoolEndCause = "shutdown" | "restart" | "abandoned";

export interface SupervisorOptions {
  name: string;
  logger: Logger;
  /** Starts one runner with `plugin` in its preset (the plugin reports the runner's pool). */
  startRunner: (plugin: GraphileConfig.Plugin) => Promise<Runner>;
  /** Before the pool's workers fetch their first job; fetching waits for it. */
  poolStarted: (poolId: string, runner: string) => Promise<void>;
  /** After the pool has ended and before any restart. */
  poolEnded: (poolId: string, cause: PoolEndCause) => Promise<void>;
  /** The emitter the runners report to (a pool shutting down on its own is watched through it). */
  events: WorkerEvents;
  /** A pool shutting down on its own is ended forcefully after this long. @defaultValue 10000 */
  abandonAfterMs?: number;
  /** How long a forceful shutdown is waited for before its pool counts as ended anyway. @defaultValue 500 */
  forcedEndWaitMs?: number;
  /** First restart delay, doubled per failed restart up to `maxRestartDelayMs`. @defaultValue 1000 */
  minRestartDelayMs?: number;
  /** @defaultValue 30000 */
  maxRestartDelayMs?: number;
}

const LOCAL_QUEUE_RETURN_FAILED = "Error occurred whilst returning jobs from local queue to database queue";
let localQueueReturnGuarded = false;

/** See the header: once per process, before any runner with a local queue starts. */
export function guardLocalQueueReturn(logger: Logger): void {
  if (localQueueReturnGuarded) return;
  localQueueReturnGuarded = true;
  process.on("unhandledRejection", (reason) => {
    if (reason instanceof Error && reason.message.startsWith(LOCAL_QUEUE_RETURN_FAILED)) {
      logger.error({ err: reason }, "graphile-worker could not return a stopped pool's local queue to the database; its jobs go back when the pool is settled");
      return;
    }
    // What Node does without a handler: the process ends on the rejection.
    throw reason;
  });
}

/** A runner that stayed up this long resets the backoff. */
const HEALTHY_RUN_MS = 60_000;
/**
 * A runner whose last this-many pools each ended on their own before `HEALTHY_RUN_MS` is crash-looping:
 * readiness says so until a pool has stayed up that long.
 */
export const CRASH_LIMIT = 3;
/** Settling an ended pool is retried this often (the database may be away); then the sweeper's turn. */
const SETTLE_ATTEMPTS = 8;
/**
 * A forceful shutdown is waited for this long before its pool counts as ended anyway: long enough
 * for graphile-worker to release the pool's workers, short enough to settle the pool before the
 * exit deadline (one second after the shutdown deadline's forceful stop).
 */
const FORCED_END_WAIT_MS = 500;

export class SupervisedRunner {
  readonly name: string;
  readonly #options: SupervisorOptions;
  readonly #logger: Logger;
  #runner: Runner | null = null;
  #pool: WorkerPool | null = null;
  /** The current pool is shutting down on its own (a fatal error): it fetches no more jobs. */
  #poolEnding = false;
  /** Why the current pool started shutting down on its own, when it did. */
  #endReason: string | null = null;
  #stopping = false;
  #restarts = 0;
  /** Pools in a row that ended on their own soon after starting, and why the last one did. */
  #shortRuns = 0;
  #lastEnd = "";
  /** When the current pool's runner started (performance.now()), or null while none runs. */
  #upAt: number | null = null;
  #wake: (() => void) | null = null;
  #supervising: Promise<void> = Promise.resolve();
  readonly #settling = new Set<Promise<void>>();
  /** Resolved once the current pool has been shut down forcefully: it counts as ended then, whatever its runner says. */
  #forced: PromiseWithResolvers<void> | null = null;

  constructor(options: SupervisorOptions) {
    this.name = options.name;
    this.#options = options;
    this.#logger = options.logger.child({ runner: options.name });
    options.events.on("pool:gracefulShutdown", ({ workerPool, message }) => {
      if (this.#stopping || workerPool.id !== this.#pool?.id) return;
      this.#poolEnding = true;
      this.#endReason = message;
      this.#logger.error({ poolId: workerPool.id, reason: message }, "worker pool is shutting down on its own; its runner will be restarted");
      setTimeout(() => {
        if (this.#pool === workerPool) void this.forceStop(`shutting down on its own did not finish: ${message}`);
      }, options.abandonAfterMs ?? 10_000).unref();
    });
  }

  /** Starts the first runner; a failure here is the caller's (start-up fails as before). */
  async start(): Promise<void> {
    const runner = await this.#options.startRunner(this.#plugin());
    this.#supervising = this.#supervise(runner);
  }

  /** The runner is up (not ended, not waiting to restart). */
  isUp(): boolean {
    return this.#runner !== null && !this.#stopping && !this.#poolEnding;
  }

  /**
   * Why readiness should fail when this runner keeps ending on its own (a fault that recurs with
   * every pool, such as a statement graphile-worker cannot run), or null. Restarting hides such a
   * fault: the runner is up most of the time between crashes.
   */
  crashLoop(): string | null {
    if (this.#upAt !== null && performance.now() - this.#upAt >= HEALTHY_RUN_MS) this.#shortRuns = 0;
    if (this.#shortRuns < CRASH_LIMIT) return null;
    return `runner '${this.name}' keeps ending unexpectedly: ${this.#shortRuns} pools in a row ended within ${HEALTHY_RUN_MS / 1000} s (last: ${this.#lastEnd})`;
  }

  /** The current pool's id, once its workers have started. */
  poolId(): string | null {
    return this.#pool?.id ?? null;
  }

  /** Stops fetching jobs at once; running jobs finish, or are aborted at the pool's abort timeout. */
  async stop(): Promise<void> {
    this.#stopping = true;
    this.#wake?.();
    // A pool shut down forcefully counts as ended even when its runner's stop never returns.
    if (this.#runner) await Promise.race([this.#runner.stop().catch(() => {}), this.#supervising]);
    await this.#supervising;
    await Promise.all(this.#settling);
  }

  /** Fails the pool's running jobs back to the queue and ends it now (shutdown deadline, or declared dead). */
  async forceStop(reason: string): Promise<void> {
    const pool = this.#pool;
    if (!pool) return;
    const shutDown = Promise.resolve()
      .then(() => pool.forcefulShutdown(reason))
      .then(
        () => {},
        (error: unknown) => this.#logger.warn({ err: error, poolId: pool.id }, "forceful shutdown of a worker pool reported an error"),
      );
    // The forceful shutdown may itself never settle: it ends by releasing the completion batcher,
    // which waits forever once its count has gone wrong (graphile/worker#636), and a second call
    // returns the first's promise. Seen in a chaos run after a database restart: the pool's graceful
    // and forceful shutdowns had both failed on their own, so the runner was never restarted and
    // SIGTERM ran into the exit deadline. Its workers are released at its start, and its jobs are
    // given back by the settlement, so it is waited for only briefly.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([shutDown, new Promise<void>((resolve) => (timer = setTimeout(resolve, this.#options.forcedEndWaitMs ?? FORCED_END_WAIT_MS)))]);
    clearTimeout(timer);
    // graphile-worker's forceful shutdown fails the pool's running jobs back to the queue, with
    // their attempt spent and no event, and releases its workers, but the pool may never report its
    // end (a graceful shutdown that hangs, graphile/worker#636, seen after a database restart): then
    // nothing settled it (the jobs kept their spent attempt and had no event) and its runner was
    // never restarted. So the pool counts as ended now.
    if (pool === this.#pool) this.#forced?.resolve();
  }

  /** Runs `poolEnded`, retrying with backoff while it fails; never rejects. */
  async #settle(poolId: string, cause: PoolEndCause): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.#options.poolEnded(poolId, cause);
        return;
      } catch (error) {
        if (attempt >= SETTLE_ATTEMPTS || this.#stopping) {
          this.#logger.error({ err: error, poolId }, "could not settle an ended worker pool; the sweeper will release its jobs");
          return;
        }
        this.#logger.warn({ err: error, poolId, attempt }, "could not settle an ended worker pool yet; will retry");
        await new Promise((resolve) => setTimeout(resolve, Math.min(10_000, 500 * 2 ** attempt)).unref());
      }
    }
  }

  #plugin(): GraphileConfig.Plugin {
    return {
      name: "ObservingJobsPoolPlugin",
      version: "1.0.0",
      worker: {
        hooks: {
          // Runs in each worker before its first fetch: the pool is known here, and its heartbeat
          // row is written before it can lock a job.
          startWorker: async (_context, { worker }) => {
            this.#pool = worker.workerPool;
            await this.#options.poolStarted(worker.workerPool.id, this.name);
          },
        },
      },
    };
  }

  async #supervise(first: Runner): Promise<void> {
    let runner: Runner | null = first;
    for (;;) {
      if (runner) {
        this.#runner = runner;
        if (this.#stopping) void runner.stop().catch(() => {});
        const upAt = performance.now();
        this.#upAt = upAt;
        let failure: unknown = null;
        const forced = (this.#forced = Promise.withResolvers<void>());
        let runnerEnded = false;
        await Promise.race([runner.promise.catch((error: unknown) => (failure = error)).finally(() => (runnerEnded = true)), forced.promise]);
        // Counted as ended by its forceful shutdown: the runner's own stop releases what the pool's end
        // would have (its cron scheduler above all, or the next runner's would run beside it). At
        // shutdown it was asked already; a second ask is refused, harmlessly.
        if (!runnerEnded) void runner.stop().catch(() => {});
        this.#forced = null;
        this.#runner = null;
        this.#upAt = null;
        const pool = this.#pool;
        this.#pool = null;
        this.#poolEnding = false;
        if (pool) {
          const settled = this.#settle(pool.id, this.#stopping ? "shutdown" : "restart");
          this.#settling.add(settled);
          void settled.finally(() => this.#settling.delete(settled));
          // At shutdown the settlement is part of stopping; otherwise the restart need not wait for it.
          if (this.#stopping) await settled;
        }
        if (this.#stopping) return;
        const shortRun = performance.now() - upAt < HEALTHY_RUN_MS;
        if (!shortRun) this.#restarts = 0;
        this.#shortRuns = shortRun ? this.#shortRuns + 1 : 0;
        this.#lastEnd = describeEnd(failure, this.#endReason);
        this.#endReason = null;
        this.#logger.error({ err: failure, poolId: pool?.id }, "job runner ended unexpectedly; restarting it");
      }
      if (this.#stopping) return;
      this.#restarts += 1;
      const min = this.#options.minRestartDelayMs ?? 1000;
      const delay = Math.min(this.#options.maxRestartDelayMs ?? 30_000, min * 2 ** (this.#restarts - 1));
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, delay);
        this.#wake = () => (clearTimeout(timer), resolve());
      });
      this.#wake = null;
      if (this.#stopping) return;
      try {
        runner = await this.#options.startRunner(this.#plugin());
        this.#logger.info({ restarts: this.#restarts }, "job runner restarted");
      } catch (error) {
        this.#logger.warn({ err: error, restarts: this.#restarts }, "could not restart the job runner; will try again");
        runner = null;
      }
    }
  }
}

/** One line for readiness: the pool's own reason, else the runner's error. */
function describeEnd(failure: unknown, reason: string | null): string {
  const error = failure instanceof Error ? failure.message : failure === null ? null : String(failure);
  const text = [reason, error].filter((part) => part).join(": ") || "no error reported";
  return text.length > 300 ? `${text.slice(0, 300)}…` : text;
}
