/**
 * The supervisor with a runner whose pool never reports its end (graphile-worker 0.18's graceful
 * shutdown can hang after a failed completion, graphile/worker#636): shut down forcefully, the pool
 * counts as ended, is settled, and a new runner starts. graphile-worker is stood in for by an object
 * with the runner's and the pool's shape, since the hang cannot be brought about on purpose.
 */
import { EventEmitter } from "node:events";
import type { Runner, WorkerEvents, WorkerPool } from "graphile-worker";
import { describe, expect, it } from "vitest";
import { makeLogger } from "../../src/observability/logger.ts";
import { SupervisedRunner } from "../../src/worker/supervisor.ts";
import { waitFor } from "../helpers/env.ts";

/**
 * A runner whose promise never settles; its pool is reported through the plugin, as graphile-worker
 * does. With `forcefulHangs`, the pool's forceful shutdown never settles either.
 */
function hangingRunner(plugin: GraphileConfig.Plugin, poolId: string, seen: Seen, forcefulHangs: boolean): Runner {
  const forcefulShutdown = (reason: string) => {
    seen.forced.push(`${poolId}: ${reason}`);
    return forcefulHangs ? new Promise<void>(() => {}) : Promise.resolve();
  };
  const pool = { id: poolId, forcefulShutdown } as unknown as WorkerPool;
  seen.pools.push(pool);
  const startWorker = plugin.worker?.hooks?.startWorker as unknown as (context: unknown, event: { worker: { workerPool: WorkerPool } }) => Promise<void>;
  void startWorker({}, { worker: { workerPool: pool } });
  const stop = () => {
    seen.stopped.push(poolId);
    return new Promise<void>(() => {});
  };
  return { promise: new Promise<void>(() => {}), stop } as unknown as Runner;
}

interface Seen {
  started: string[];
  ended: string[];
  forced: string[];
  stopped: string[];
  pools: WorkerPool[];
}

/** A supervisor of hanging runners, and what it did to them. */
function superviseHangingRunners(options: { forcefulHangs: boolean; forcedEndWaitMs?: number }) {
  const events: WorkerEvents = new EventEmitter();
  const seen: Seen = { started: [], ended: [], forced: [], stopped: [], pools: [] };
  const supervisor = new SupervisedRunner({
    name: "main",
    logger: makeLogger({ level: "silent", format: "json", version: "test", googleCloudProject: undefined }),
    events,
    abandonAfterMs: 50,
    minRestartDelayMs: 10,
    ...(options.forcedEndWaitMs === undefined ? {} : { forcedEndWaitMs: options.forcedEndWaitMs }),
    startRunner: async (plugin) => hangingRunner(plugin, `pool-${seen.started.push("x")}`, seen, options.forcefulHangs),
    poolStarted: async () => {},
    poolEnded: async (poolId, cause) => void seen.ended.push(`${poolId} ${cause}`),
  });
  /** The first pool starts shutting down on its own (a failed completion) and hangs there. */
  const failFirstPool = () =>
    events.emit("pool:gracefulShutdown", { workerPool: seen.pools[0]!, message: "Could not completeJobs; queue is in an inconsistent state; aborting." } as never);
  return { supervisor, seen, failFirstPool };
}

describe("a pool that never reports its end", () => {
  it("is settled and its runner restarted once it was shut down forcefully; at shutdown, stop returns", async () => {
    const { supervisor, seen, failFirstPool } = superviseHangingRunners({ forcefulHangs: false });
    await supervisor.start();
    await waitFor(() => supervisor.poolId() === "pool-1", { message: "the first pool to start" });
    failFirstPool();
    await waitFor(() => seen.started.length === 2, { message: "a new runner after the forceful shutdown" });
    expect(seen.forced).toEqual([expect.stringMatching(/^pool-1: shutting down on its own did not finish/)]);
    expect(seen.ended).toEqual(["pool-1 restart"]);
    // The first runner is stopped too (its cron must not run beside the second's).
    expect(seen.stopped).toEqual(["pool-1"]);

    // Stopping: the second pool's stop never returns either; the deadline's forceful stop ends it.
    await waitFor(() => supervisor.poolId() === "pool-2", { message: "the second pool to start" });
    const stopped = supervisor.stop();
    await supervisor.forceStop("the instance is shutting down and its deadline has passed");
    await stopped;
    expect(seen.ended).toEqual(["pool-1 restart", "pool-2 shutdown"]);
    expect(seen.started).toHaveLength(2);
  });

  it("counts as ended a bounded time after its forceful shutdown was asked for, when that shutdown never settles either", async () => {
    // Seen in a chaos run after a database restart: the pool's graceful and forceful shutdowns both
    // failed on their own, the forceful one then waited forever in its final release of the
    // completion batcher (graphile/worker#636), and a second forceful shutdown returns the first's
    // promise. The runner was never restarted, and SIGTERM ran into the exit deadline.
    const { supervisor, seen, failFirstPool } = superviseHangingRunners({ forcefulHangs: true, forcedEndWaitMs: 100 });
    await supervisor.start();
    await waitFor(() => supervisor.poolId() === "pool-1", { message: "the first pool to start" });
    failFirstPool();
    await waitFor(() => seen.started.length === 2, { message: "a new runner although the forceful shutdown never settled" });
    expect(seen.ended).toEqual(["pool-1 restart"]);
    expect(seen.stopped).toEqual(["pool-1"]);

    await waitFor(() => supervisor.poolId() === "pool-2", { message: "the second pool to start" });
    const stopped = supervisor.stop();
    const deadlineAt = performance.now();
    await supervisor.forceStop("the instance is shutting down and its deadline has passed");
    await stopped;
    expect(performance.now() - deadlineAt).toBeLessThan(1000);
    expect(seen.ended).toEqual(["pool-1 restart", "pool-2 shutdown"]);
  });
});
