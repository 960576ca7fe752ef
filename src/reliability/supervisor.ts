/**
 * Keeps one graphile-worker runner running. graphile-worker recovers from most database trouble by
 * itself (job fetches retry every poll, LISTEN reconnects with backoff, cron restarts and back-fills,
 * completions retry for minutes), but a runner whose pool gives up (completions failing for longer
 * than that, or a pool this service stopped because it was declared dead) ends for good. The
 * supervisor then starts a new runner, with a new pool id, after an exponential backoff.
 */
import type { Runner, WorkerPool } from "graphile-worker";
import type { Logger } from "../observability/logger.ts";

/** Why a pool ended: the service is stopping, or the runner ended on its own and is restarted. */
export type PoolEndCause = "shutdown" | "restart";

export interface SupervisorOptions {
  name: string;
  logger: Logger;
  /** Starts one runner with `plugin` in its preset (the plugin reports the runner's pool). */
  startRunner: (plugin: GraphileConfig.Plugin) => Promise<Runner>;
  /** Before the pool's workers fetch their first job; fetching waits for it. */
  poolStarted: (poolId: string, runner: string) => Promise<void>;
  /** After the pool has ended and before any restart. */
  poolEnded: (poolId: string, cause: PoolEndCause) => Promise<void>;
  /** First restart delay, doubled per failed restart up to `maxRestartDelayMs`. @defaultValue 1000 */
  minRestartDelayMs?: number;
  /** @defaultValue 30000 */
  maxRestartDelayMs?: number;
}

/** A runner that stayed up this long resets the backoff. */
const HEALTHY_RUN_MS = 60_000;

export class SupervisedRunner {
  readonly name: string;
  readonly #options: SupervisorOptions;
  readonly #logger: Logger;
  #runner: Runner | null = null;
  #pool: WorkerPool | null = null;
  #stopping = false;
  #restarts = 0;
  #nextRestartAt: number | null = null;
  #wake: (() => void) | null = null;
  #supervising: Promise<void> = Promise.resolve();

  constructor(options: SupervisorOptions) {
    this.name = options.name;
    this.#options = options;
    this.#logger = options.logger.child({ runner: options.name });
  }

  /** Starts the first runner; a failure here is the caller's (start-up fails as before). */
  async start(): Promise<void> {
    const runner = await this.#options.startRunner(this.#plugin());
    this.#supervising = this.#supervise(runner);
  }

  /** The runner is up (not ended, not waiting to restart). */
  isUp(): boolean {
    return this.#runner !== null && !this.#stopping;
  }

  /** The current pool's id, once its workers have started. */
  poolId(): string | null {
    return this.#pool?.id ?? null;
  }

  /** What readiness shows while the runner is down. */
  describe(): string {
    if (this.isUp()) return "running";
    if (this.#nextRestartAt === null) return this.#stopping ? "stopped" : "starting";
    return `restarting (attempt ${this.#restarts}, in ${Math.max(0, Math.round(this.#nextRestartAt - performance.now()))} ms)`;
  }

  /** Stops fetching jobs at once; running jobs finish, or are aborted at the pool's abort timeout. */
  async stop(): Promise<void> {
    this.#stopping = true;
    this.#wake?.();
    if (this.#runner) await this.#runner.stop().catch(() => {});
    await this.#supervising;
  }

  /** Fails the pool's running jobs back to the queue and ends it now (shutdown deadline, or declared dead). */
  async forceStop(reason: string): Promise<void> {
    const pool = this.#pool;
    if (!pool) return;
    try {
      await pool.forcefulShutdown(reason);
    } catch (error) {
      this.#logger.warn({ err: error, poolId: pool.id }, "forceful shutdown of a worker pool reported an error");
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
        this.#nextRestartAt = null;
        if (this.#stopping) void runner.stop().catch(() => {});
        const upAt = performance.now();
        let failure: unknown = null;
        await runner.promise.catch((error: unknown) => (failure = error));
        this.#runner = null;
        const pool = this.#pool;
        this.#pool = null;
        if (pool) {
          await this.#options.poolEnded(pool.id, this.#stopping ? "shutdown" : "restart").catch((error: unknown) => {
            this.#logger.error({ err: error, poolId: pool.id }, "could not settle an ended worker pool; the sweeper will release its jobs");
          });
        }
        if (this.#stopping) return;
        if (performance.now() - upAt > HEALTHY_RUN_MS) this.#restarts = 0;
        this.#logger.error({ err: failure, poolId: pool?.id }, "job runner ended unexpectedly; restarting it");
      }
      if (this.#stopping) return;
      this.#restarts += 1;
      const min = this.#options.minRestartDelayMs ?? 1000;
      const delay = Math.min(this.#options.maxRestartDelayMs ?? 30_000, min * 2 ** (this.#restarts - 1));
      this.#nextRestartAt = performance.now() + delay;
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
