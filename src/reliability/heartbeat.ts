/**
 * Heartbeats: every worker pool of this process records in `observing_jobs.worker_heartbeats`
 * that it is alive, every `HEARTBEAT_INTERVAL_MS`, in one statement for all pools. A pool starts
 * fetching jobs only once its row exists (see `register`; the fetch fence of migration
 * 0010_job_fencing enforces it), so every lock a pool of this service takes can be traced to a
 * heartbeat and released by the sweeper if the beats stop.
 *
 * The beats are written by a worker thread with its own connection (heartbeat-thread.ts), so
 * liveness is judged by something a busy main thread cannot starve: a handler blocking the event
 * loop for a minute, a long garbage collection or a saturated pool never gets a live pool declared
 * dead. A process that is frozen as a whole (SIGSTOP, a VM pause) freezes the thread too; past
 * the rescue threshold its jobs are released, and when it wakes it learns so at its next beat.
 *
 * A beat for a pool the sweeper has declared dead does not revive it: the pool is reported through
 * `onDeclaredDead` and must stop, because its jobs have been released to other pools. Between
 * beats the main thread can tell, without waiting for anything, whether a pool's lease still holds
 * (`leaseHolds`): its last beat found it live recently enough that the sweeper cannot have declared
 * it dead since.
 */
import { randomBytes } from "node:crypto";
import os from "node:os";
import { Worker } from "node:worker_threads";
import { sql } from "kysely";
import type { Db } from "../db/database.ts";
import type { WorkerHeartbeatRow } from "../db/tables/worker-heartbeats.ts";
import type { Logger } from "../observability/logger.ts";
import { exposingGc, type MemoryRelease } from "../startup-memory.ts";

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
  /** Where the thread connects (the service's DATABASE_URL or the embedded server). */
  connectionString: string;
  intervalMs: number;
  /** The sweeper's threshold: a lease lasts this long from the beat that granted it, less one interval of margin. */
  rescueAfterMs: number;
  /** A beat with no answer this long is given up and retried on a new connection. @defaultValue the interval, at least 2 s */
  beatTimeoutMs?: number;
  /** Connecting may take this long (a loaded server forks slowly). @defaultValue 10000 */
  connectTimeoutMs?: number;
  /** TCP keepalive of the thread's connection (see src/db/database.ts). @defaultValue 10000 */
  keepAliveIdleMs?: number;
  /** The thread stops beating when the main thread has not run for this long. */
  stallLimitMs: number;
  logger: Logger;
  /** A pool of this process was declared dead by the sweeper (it was silent too long). */
  onDeclaredDead: (poolId: string) => void;
  /**
   * The jobs a pool is running now (attempts begun and not ended), sent with its beats; null for a
   * pool that never holds a job it has not started (no local queue): its locks are its attempts.
   */
  runningJobs?: (poolId: string, runner: string) => Iterable<string> | null;
}

/** What the thread starts with (workerData). */
export interface HeartbeatThreadData {
  connectionString: string;
  intervalMs: number;
  beatTimeoutMs: number;
  connectTimeoutMs: number;
  keepAliveIdleMs: number;
  stallLimitMs: number;
  identity: InstanceIdentity;
  shared: SharedArrayBuffer;
}

export type ToHeartbeatThread =
  | { type: "register"; poolId: string; runner: string; tasks: string[]; session: string | null; slot: number }
  | { type: "unregister"; poolId: string }
  | { type: "running"; pools: Array<[poolId: string, jobIds: string[]]> }
  | { type: "beat" }
  | { type: "release-startup-memory"; handshake: SharedArrayBuffer }
  | { type: "close" };

type FromHeartbeatThread =
  | { type: "beat"; ok: boolean; alive: string[]; dead: string[] }
  | { type: "log"; level: "info" | "warn" | "error"; message: string; fields: Record<string, unknown> }
  | { type: "startup-memory-released"; release: MemoryRelease | null }
  | { type: "closed" };

/** Pools one process can track at once (runners times restarts in flight; a handful in practice). */
const MAX_POOLS = 64;
const FIRST_POOL_SLOT = 3;
/**
 * How long the main thread waits, blocked, for the heartbeat thread to reach V8's collector (see
 * `releaseStartupMemory`); it takes well under a millisecond, as the thread's event loop only ever
 * waits on its beats. Past this the thread finds the flag off and skips its collection.
 */
const COLLECTOR_HANDSHAKE_MS = 200;
/** How often the main thread proves to the heartbeat thread that it still runs. */
const TICK_MS = 1000;

interface TrackedPool {
  slot: number;
  runner: string;
  /** The running jobs last sent to the thread, comma-joined. */
  runningSent?: string;
  registered: PromiseWithResolvers<void>;
}

export class HeartbeatWriter {
  readonly identity: InstanceIdentity;
  readonly #options: HeartbeatOptions;
  readonly #logger: Logger;
  readonly #pools = new Map<string, TrackedPool>();
  readonly #freeSlots = Array.from({ length: MAX_POOLS }, (_, i) => i);
  readonly #state: BigInt64Array;
  readonly #thread: Worker;
  readonly #tick: NodeJS.Timeout;
  readonly #exited: Promise<void>;
  /** Callers of `releaseStartupMemory` waiting for the thread's answer, in order. */
  readonly #memoryReleases: Array<(release: MemoryRelease | null) => void> = [];
  #closed = false;
  /** The thread has ended, whether `close()` ended it or it failed: messages to it go nowhere. */
  #threadExited = false;

  constructor(identity: InstanceIdentity, options: HeartbeatOptions) {
    this.identity = identity;
    this.#options = options;
    this.#logger = options.logger.child({ component: "heartbeat" });
    const shared = new SharedArrayBuffer(BigInt64Array.BYTES_PER_ELEMENT * (FIRST_POOL_SLOT + MAX_POOLS));
    this.#state = new BigInt64Array(shared);
    this.#state[2] = process.hrtime.bigint();
    this.#tick = setInterval(() => {
      this.#state[2] = process.hrtime.bigint();
      this.#sendRunningJobs();
    }, TICK_MS);
    this.#tick.unref();
    const data: HeartbeatThreadData = {
      connectionString: options.connectionString,
      intervalMs: options.intervalMs,
      beatTimeoutMs: options.beatTimeoutMs ?? Math.max(2000, options.intervalMs),
      connectTimeoutMs: options.connectTimeoutMs ?? 10_000,
      keepAliveIdleMs: options.keepAliveIdleMs ?? 10_000,
      stallLimitMs: options.stallLimitMs,
      identity,
      shared,
    };
    // src/ runs as TypeScript in development and as JavaScript from dist/ in the image.
    const script = new URL(import.meta.url.endsWith(".ts") ? "./heartbeat-thread.ts" : "./heartbeat-thread.js", import.meta.url);
    // No execArgv: the thread needs none of the main thread's preloads (the tracing SDK).
    this.#thread = new Worker(script, { workerData: data, name: "observing-jobs heartbeat", execArgv: [] });
    this.#thread.on("message", (message: FromHeartbeatThread) => this.#receive(message));
    this.#thread.on("error", (error) => this.#logger.error({ err: error }, "the heartbeat thread failed; pools of this instance will be declared dead"));
    this.#exited = new Promise((resolve) => this.#thread.once("exit", () => resolve()));
    void this.#exited.then(() => {
      this.#threadExited = true;
      for (const answer of this.#memoryReleases.splice(0)) answer(null);
    });
  }

  /** Starts beating for a pool serving these tasks; resolves once its row is written (or the writer is closed). */
  register(poolId: string, runner: string, tasks: readonly string[], session: string | null = null): Promise<void> {
    let pool = this.#pools.get(poolId);
    if (!pool) {
      const slot = this.#freeSlots.shift();
      if (slot === undefined) throw new Error(`more than ${MAX_POOLS} worker pools in one process`);
      Atomics.store(this.#state, FIRST_POOL_SLOT + slot, 0n);
      pool = { slot, runner, registered: Promise.withResolvers<void>() };
      this.#pools.set(poolId, pool);
      if (this.#closed) pool.registered.resolve();
      else this.#thread.postMessage({ type: "register", poolId, runner, tasks: [...tasks], session, slot } satisfies ToHeartbeatThread);
    }
    return pool.registered.promise;
  }

  /** What each pool runs, for the thread's next beat; sent only when it changed (once a second at most). */
  #sendRunningJobs(): void {
    const source = this.#options.runningJobs;
    if (!source || this.#closed) return;
    const changed: Array<[string, string[]]> = [];
    let started = false;
    for (const [poolId, pool] of this.#pools) {
      const running = source(poolId, pool.runner);
      if (running === null) continue;
      const ids = [...running];
      const key = ids.join(",");
      if (key === pool.runningSent) continue;
      const before = new Set(pool.runningSent ? pool.runningSent.split(",") : []);
      if (ids.some((id) => !before.has(id))) started = true;
      pool.runningSent = key;
      changed.push([poolId, ids]);
    }
    if (changed.length === 0) return;
    this.#thread.postMessage({ type: "running", pools: changed } satisfies ToHeartbeatThread);
    // A job that began since the last beat is recorded now, not up to an interval later: were its
    // instance to die meanwhile, the sweeper would take it for one that never started.
    if (started) this.#thread.postMessage({ type: "beat" } satisfies ToHeartbeatThread);
  }

  /** Stops beating for a pool (it has ended; its row is settled by whoever ended it). */
  unregister(poolId: string): void {
    const pool = this.#pools.get(poolId);
    if (!pool) return;
    pool.registered.resolve();
    this.#pools.delete(poolId);
    this.#freeSlots.push(pool.slot);
    if (!this.#closed) this.#thread.postMessage({ type: "unregister", poolId } satisfies ToHeartbeatThread);
  }

  /**
   * True while the pool's lease holds: a beat found it live less than `RESCUE_AFTER_MS` minus one
   * heartbeat interval ago (measured from when that beat was sent, so before the database stamped
   * it). The sweeper declares a pool dead only `RESCUE_AFTER_MS` after its last stamp, so while
   * this holds nobody else can have been given the pool's jobs. False once it was declared dead.
   */
  leaseHolds(poolId: string): boolean {
    const pool = this.#pools.get(poolId);
    if (!pool) return false;
    const grantedAt = Atomics.load(this.#state, FIRST_POOL_SLOT + pool.slot);
    if (grantedAt <= 0n) return false;
    const ageMs = Number(process.hrtime.bigint() - grantedAt) / 1e6;
    return ageMs < this.#options.rescueAfterMs - this.#options.intervalMs;
  }

  /** When a beat was last written (performance.now() milliseconds), or null. */
  lastWrittenAt(): number | null {
    return this.#asPerformanceTime(Atomics.load(this.#state, 0));
  }

  /** Since when beats have succeeded without a failure in between (performance.now() milliseconds), or null. */
  healthySince(): number | null {
    return this.#asPerformanceTime(Atomics.load(this.#state, 1));
  }

  /** Asks for a beat now (it is written by the thread; this does not wait for it). */
  beat(): void {
    if (!this.#closed) this.#thread.postMessage({ type: "beat" } satisfies ToHeartbeatThread);
  }

  /**
   * Has the thread run its own start-up collection (src/startup-memory.ts). The main thread holds
   * `--expose-gc` on, blocked, until the thread has created the context that reaches the
   * collector, so that only this thread writes V8's flags and nothing runs here while the flag is
   * on. Null when the thread could not, has ended or ends first.
   */
  releaseStartupMemory(): Promise<MemoryRelease | null> {
    if (this.#closed || this.#threadExited) return Promise.resolve(null);
    const { promise, resolve } = Promise.withResolvers<MemoryRelease | null>();
    this.#memoryReleases.push(resolve);
    const handshake = new Int32Array(new SharedArrayBuffer(Int32Array.BYTES_PER_ELEMENT));
    exposingGc(() => {
      this.#thread.postMessage({ type: "release-startup-memory", handshake: handshake.buffer } satisfies ToHeartbeatThread);
      Atomics.wait(handshake, 0, 0, COLLECTOR_HANDSHAKE_MS);
    });
    return promise;
  }

  /** Stops the thread after its beat in flight; pools still registered stop waiting. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#tick);
    this.#thread.postMessage({ type: "close" } satisfies ToHeartbeatThread);
    const ended = await Promise.race([this.#exited.then(() => true), new Promise<false>((resolve) => setTimeout(() => resolve(false), 3000).unref())]);
    if (!ended) await this.#thread.terminate();
    for (const pool of this.#pools.values()) pool.registered.resolve();
    this.#pools.clear();
  }

  #asPerformanceTime(hrtimeNs: bigint): number | null {
    if (hrtimeNs <= 0n) return null;
    return performance.now() - Number(process.hrtime.bigint() - hrtimeNs) / 1e6;
  }

  #receive(message: FromHeartbeatThread): void {
    switch (message.type) {
      case "log":
        this.#logger[message.level](message.fields, message.message);
        return;
      case "startup-memory-released":
        this.#memoryReleases.shift()?.(message.release);
        return;
      case "closed":
        return;
      case "beat":
        for (const id of message.alive) this.#pools.get(id)?.registered.resolve();
        for (const id of message.dead) {
          if (!this.#pools.has(id)) continue;
          this.#logger.error({ poolId: id }, "this worker pool was declared dead (its heartbeat was too old): stopping it");
          this.unregister(id);
          this.#options.onDeclaredDead(id);
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
