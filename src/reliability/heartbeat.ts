/**
 * Heartbeats: every worker pool of this process records in `observing_jobs.worker_heartbeats`
 * that it is alive, every `HEARTBEAT_INTERVAL_MS`, in one statement for all pools. A pool starts
 * fetching jobs only once its row exists (see `register`), so every lock a pool of this service
 * takes can be traced to a heartbeat and released by the sweeper if the beats stop.
 *
 * A beat for a pool the sweeper has declared dead does not revive it: the pool is reported through
 * `onDeclaredDead` and must stop, because its jobs have been released to other pools.
 */
import { randomBytes } from "node:crypto";
import os from "node:os";
import { sql } from "kysely";
import type { Db } from "../db/database.ts";
import type { WorkerHeartbeatRow } from "../db/tables/worker-heartbeats.ts";
import type { Logger } from "../observability/logger.ts";

/** Who runs the pools of this process. */
export interface InstanceIdentity {
  instanceId: string;
  revision: string | null;
  hostname: string;
  pid: number;
}

export function describeInstance(revision: string | null): InstanceIdentity {
  const hostname = os.hostname();
  return { instanceId: `${hostname}-${process.pid}-${randomBytes(3).toString("hex")}`, revision, hostname, pid: process.pid };
}

export interface HeartbeatOptions {
  intervalMs: number;
  logger: Logger;
  /** A pool of this process was declared dead by the sweeper (it was silent too long). */
  onDeclaredDead: (poolId: string) => void;
}

interface TrackedPool {
  runner: string;
  tasks: readonly string[];
  registered: PromiseWithResolvers<void>;
}

export class HeartbeatWriter {
  readonly identity: InstanceIdentity;
  readonly #db: Db;
  readonly #options: HeartbeatOptions;
  readonly #logger: Logger;
  readonly #pools = new Map<string, TrackedPool>();
  #timer: NodeJS.Timeout | undefined;
  #beating: Promise<void> | undefined;
  #again = false;
  #closed = false;
  #lastWrittenAt: number | null = null;
  #failingSince: number | null = null;
  #healthySince: number | null = null;

  constructor(db: Db, identity: InstanceIdentity, options: HeartbeatOptions) {
    this.#db = db;
    this.identity = identity;
    this.#options = options;
    this.#logger = options.logger.child({ component: "heartbeat" });
    this.#timer = setInterval(() => void this.beat(), options.intervalMs);
    this.#timer.unref();
  }

  /** Starts beating for a pool serving these tasks; resolves once its row is written (or the writer is closed). */
  register(poolId: string, runner: string, tasks: readonly string[]): Promise<void> {
    let pool = this.#pools.get(poolId);
    if (!pool) {
      pool = { runner, tasks, registered: Promise.withResolvers<void>() };
      this.#pools.set(poolId, pool);
      void this.beat();
    }
    return pool.registered.promise;
  }

  /** Stops beating for a pool (it has ended; its row is settled by whoever ended it). */
  unregister(poolId: string): void {
    this.#pools.get(poolId)?.registered.resolve();
    this.#pools.delete(poolId);
  }

  /** When a beat was last written (performance.now() milliseconds), or null. */
  lastWrittenAt(): number | null {
    return this.#lastWrittenAt;
  }

  /** Since when beats have succeeded without a failure in between (performance.now() milliseconds), or null. */
  healthySince(): number | null {
    return this.#healthySince;
  }

  /** Writes one beat for every tracked pool. Calls while a beat is in flight are folded into one more. */
  async beat(): Promise<void> {
    if (this.#beating) {
      this.#again = true;
      return this.#beating;
    }
    this.#beating = (async () => {
      do {
        this.#again = false;
        await this.#write();
      } while (this.#again && !this.#closed);
    })().finally(() => {
      this.#beating = undefined;
    });
    return this.#beating;
  }

  /** Stops the timer; pools still registered stop waiting. */
  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#timer);
    await this.#beating;
    for (const pool of this.#pools.values()) pool.registered.resolve();
    this.#pools.clear();
  }

  async #write(): Promise<void> {
    const ids = [...this.#pools.keys()];
    if (ids.length === 0 || this.#closed) return;
    const runners = ids.map((id) => this.#pools.get(id)!.runner);
    // One comma-joined list per pool: unnest cannot pair a text[][] with the other columns row by row.
    const tasks = ids.map((id) => this.#pools.get(id)!.tasks.join(","));
    const { instanceId, revision, hostname, pid } = this.identity;
    try {
      // The database's clock sets last_seen: the sweeper compares it with the same clock.
      const { rows } = await sql<{ pool_id: string }>`
        insert into observing_jobs.worker_heartbeats as h (pool_id, runner, tasks, instance_id, revision, hostname, pid)
        select pool_id, runner, string_to_array(tasks, ','), ${instanceId}, ${revision}, ${hostname}, ${pid}
        from unnest(${ids}::text[], ${runners}::text[], ${tasks}::text[]) as p(pool_id, runner, tasks)
        on conflict (pool_id) do update set last_seen = now() where h.status = 'live'
        returning pool_id`.execute(this.#db);
      this.#lastWrittenAt = performance.now();
      if (this.#failingSince !== null) this.#logger.info({ failedForMs: Math.round(this.#lastWrittenAt - this.#failingSince) }, "heartbeats are written again");
      this.#failingSince = null;
      this.#healthySince ??= this.#lastWrittenAt;
      const alive = new Set(rows.map((row) => row.pool_id));
      for (const id of ids) {
        const pool = this.#pools.get(id);
        if (!pool) continue;
        if (alive.has(id)) {
          pool.registered.resolve();
        } else {
          this.#logger.error({ poolId: id }, "this worker pool was declared dead (its heartbeat was too old): stopping it");
          this.unregister(id);
          this.#options.onDeclaredDead(id);
        }
      }
    } catch (error) {
      this.#healthySince = null;
      if (this.#failingSince === null) {
        this.#failingSince = performance.now();
        this.#logger.warn({ err: error }, "could not write heartbeats; will retry");
      }
    }
  }
}

/** A pool that shut down cleanly and holds no jobs. A pool already declared dead stays dead. */
export async function markPoolStopped(db: Db, poolId: string): Promise<void> {
  await db
    .updateTable("observing_jobs.worker_heartbeats")
    .set({ status: "stopped", ended_at: sql<Date>`now()` })
    .where("pool_id", "=", poolId)
    .where("status", "=", "live")
    .execute();
}

/** Pools that are live, and those that ended in the last hour, live first: what operators look at. */
export async function listWorkerPools(db: Db): Promise<WorkerHeartbeatRow[]> {
  return db
    .selectFrom("observing_jobs.worker_heartbeats")
    .selectAll()
    .where((eb) => eb.or([eb("status", "=", "live"), eb("ended_at", ">", sql<Date>`now() - interval '1 hour'`)]))
    .orderBy(sql`status = 'live'`, "desc")
    .orderBy("last_seen", "desc")
    .limit(100)
    .execute();
}
