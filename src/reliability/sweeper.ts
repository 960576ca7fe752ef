/**
 * The sweeper: finds worker pools whose heartbeat has gone quiet (an instance SIGKILLed, OOM-killed
 * or cut off) and releases their jobs so live pools run them at once, instead of after graphile-
 * worker's own 4-hour lock timeout.
 *
 * Every instance runs the timer, but each sweep that changes anything holds a transaction-scoped
 * advisory lock, so only one instance sweeps at a time. Staleness is judged with the database's
 * clock only (`last_seen` is written with `now()`), so clock skew between instances is harmless.
 *
 * A database outage makes every heartbeat old at once. To avoid declaring live pools dead when the
 * database comes back, a sweep only releases anything when both the database server and this
 * instance's own heartbeats have been up for at least the rescue threshold: by then every live pool
 * has had time to beat again.
 */
import { sql } from "kysely";
import type { Db } from "../db/database.ts";
import type { Logger } from "../observability/logger.ts";
import type { HeartbeatWriter } from "./heartbeat.ts";
import { countRescuesMatching } from "../db/repositories/job-records.ts";
import { findJobsToRelease, releaseJobs, type LockedJob } from "./rescue.ts";

/** The end of a rescue's reason when the job's attempt is given back (also how such rescues are counted). */
const GIVEN_BACK = "; the job was not running at its last heartbeat, so its attempt is given back";
const GIVE_BACK_LIMIT = 2;

/** The advisory lock key of the sweep ("ojsweep" in ASCII, as a bigint). */
export const SWEEPER_LOCK_KEY = 0x6f6a7377656570n;

/** Stopped and dead pools' rows are deleted this long after they ended. */
const ENDED_POOL_RETENTION = "7 days";

export interface SweeperOptions {
  intervalMs: number;
  rescueAfterMs: number;
  logger: Logger;
  /** This instance's heartbeats: the sweeper trusts its own view of the database only while they succeed. */
  heartbeats: Pick<HeartbeatWriter, "healthySince" | "lastWrittenAt">;
  /** Told how many jobs a sweep released (the rescues metric). */
  onRescued?: (count: number) => void;
}

export interface SweepResult {
  /** "swept", or why nothing was done. */
  outcome: "swept" | "locked_elsewhere" | "settling";
  deadPools: string[];
  rescuedJobs: LockedJob[];
}

export class Sweeper {
  readonly #db: Db;
  readonly #options: SweeperOptions;
  readonly #logger: Logger;
  #timer: NodeJS.Timeout | undefined;
  #sweeping: Promise<unknown> | undefined;

  constructor(db: Db, options: SweeperOptions) {
    this.#db = db;
    this.#options = options;
    this.#logger = options.logger.child({ component: "sweeper" });
  }

  start(): void {
    this.#timer = setInterval(() => {
      if (this.#sweeping) return;
      this.#sweeping = this.sweep()
        .catch((error: unknown) => this.#logger.warn({ err: error }, "sweep failed; will try again"))
        .finally(() => (this.#sweeping = undefined));
    }, this.#options.intervalMs);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await this.#sweeping;
  }

  /** One sweep: declares quiet pools dead and releases their jobs, with a `rescued` event per job. */
  async sweep(): Promise<SweepResult> {
    const { rescueAfterMs } = this.#options;
    const nothing = (outcome: SweepResult["outcome"]): SweepResult => ({ outcome, deadPools: [], rescuedJobs: [] });
    if (!this.#ownViewIsSettled()) return nothing("settling");

    // Cheap reads first: the candidates (a partial index on live pools), then their jobs (outside
    // any transaction, as graphile-worker advises for its view).
    const candidates = await this.#db
      .selectFrom("observing_jobs.worker_heartbeats")
      .select(["pool_id", "instance_id", "last_seen"])
      .where("status", "=", "live")
      .where("last_seen", "<", sql<Date>`now() - ${rescueAfterMs} * interval '1 millisecond'`)
      .where(sql<boolean>`pg_postmaster_start_time() < now() - ${rescueAfterMs} * interval '1 millisecond'`)
      .execute();
    if (candidates.length === 0) {
      await this.#pruneEndedPools();
      return nothing("swept");
    }
    const jobs = await findJobsToRelease(this.#db, candidates.map((pool) => pool.pool_id));

    const result = await this.#db.transaction().execute(async (trx) => {
      const { rows: lock } = await sql<{ locked: boolean }>`select pg_try_advisory_xact_lock(${SWEEPER_LOCK_KEY}) as locked`.execute(trx);
      if (!lock[0]?.locked) return nothing("locked_elsewhere");
      // Re-checked under the lock: a pool that beat in the meantime is alive after all.
      const dead = await trx
        .updateTable("observing_jobs.worker_heartbeats")
        .set({ status: "dead", ended_at: sql<Date>`now()` })
        .where(sql<boolean>`pool_id = any(${candidates.map((pool) => pool.pool_id)}::text[])`)
        .where("status", "=", "live")
        .where("last_seen", "<", sql<Date>`now() - ${rescueAfterMs} * interval '1 millisecond'`)
        .returning(["pool_id", "instance_id", "last_seen", "running_job_ids"])
        .execute();
      const deadIds = dead.map((pool) => pool.pool_id);
      const lastSeen = new Map(dead.map((pool) => [pool.pool_id, pool.last_seen]));
      const rescued = jobs.filter((job) => lastSeen.has(job.poolId));
      // A job the pool was not running at its last beat never started (it waited in the pool's local
      // queue) or had ended (its completion was not written yet): its attempt is given back. A
      // running one spends it: the crash may be its own doing. Unknown (null): all count as running.
      // A job that keeps killing its instance within a second of starting could be missed by the
      // list every time: after GIVE_BACK_LIMIT give-backs its attempts count regardless.
      const running = new Map(dead.map((pool) => [pool.pool_id, pool.running_job_ids === null ? null : new Set(pool.running_job_ids.map(String))]));
      const givenBack = await countRescuesMatching(trx, rescued.map((job) => job.id), GIVEN_BACK);
      const wasRunning = (job: LockedJob) => (running.get(job.poolId)?.has(job.id) ?? true) || (givenBack.get(job.id) ?? 0) >= GIVE_BACK_LIMIT;
      const notRunning = rescued.filter((job) => !wasRunning(job));
      await releaseJobs(trx, deadIds, rescued, {
        actor: "sweeper",
        reason: (job) => `worker pool ${job.poolId} stopped sending heartbeats (last seen ${lastSeen.get(job.poolId)!.toISOString()})${wasRunning(job) ? "" : GIVEN_BACK}`,
        giveBackAttempt: new Map(notRunning.map((job) => [job.id, null])),
      });
      for (const pool of dead) {
        this.#logger.warn(
          { poolId: pool.pool_id, instanceId: pool.instance_id, lastSeen: pool.last_seen, jobs: rescued.filter((job) => job.poolId === pool.pool_id).map((job) => job.id) },
          "declared a silent worker pool dead and released its jobs",
        );
      }
      return { outcome: "swept" as const, deadPools: deadIds, rescuedJobs: rescued };
    });
    if (result.rescuedJobs.length > 0) this.#options.onRescued?.(result.rescuedJobs.length);
    return result;
  }

  /** This instance has written its heartbeats without a failure for the rescue threshold, the last one recently. */
  #ownViewIsSettled(): boolean {
    const { heartbeats, rescueAfterMs } = this.#options;
    const now = performance.now();
    const since = heartbeats.healthySince();
    const written = heartbeats.lastWrittenAt();
    return since !== null && written !== null && now - since >= rescueAfterMs && now - written < rescueAfterMs;
  }

  async #pruneEndedPools(): Promise<void> {
    await this.#db
      .deleteFrom("observing_jobs.worker_heartbeats")
      .where("ended_at", "<", sql<Date>`now() - ${ENDED_POOL_RETENTION}::interval`)
      .execute();
  }
}
