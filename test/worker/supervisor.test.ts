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

const silent = () => makeLogger({ level: "silent", format: "json", version: "test", googleCloudProject: undefined });

/**
 * A runner whose promise never settles; its pool is reported through the plugin, as graphile-worker
 * does. With `forcefulHangs`, the pool's forceful shutdown never settles either.
 */
function hangingRunner(plugin: GraphileConfig.Plugin, poolId: string, forced: string[], pools: WorkerPool[], forcefulHangs = false): Runner {
  const forcefulShutdown = (reason: string) => {
    forced.push(`${poolId}: ${reason}`);
    return forcefulHangs ? new Promise<void>(() => {}) : Promise.resolve();
  };
  const pool = { id: poolId, forcefulShutdown } as unknown as WorkerPool;
  pools.push(pool);
  const startWorker = plugin.worker?.hooks?.startWorker as unknown as (context: unknown, event: { worker: { workerPool: WorkerPool } }) => Promise<void>;
  void startWorker({}, { worker: { workerPool: pool } });
  return { promise: new Promise<void>(() => {}), stop: () => new Promise<void>(() => {}) } as unknown as Runner;
}

describe("a pool that never reports its end", () => {
  it("is settled and its runner restarted once it was shut down forcefully; at shutdown, stop returns", async () => {
    const events: WorkerEvents = new EventEmitter();
    const started: string[] = [];
    const ended: string[] = [];
    const forced: string[] = [];
    const pools: WorkerPool[] = [];
    const supervisor = new SupervisedRunner({
      name: "main",
      logger: silent(),
      events,
      abandonAfterMs: 50,
      minRestartDelayMs: 10,
      startRunner: async (plugin) => hangingRunner(plugin, `pool-${started.push("x")}`, forced, pools),
      poolStarted: async () => {},
      poolEnded: async (poolId, cause) => void ended.push(`${poolId} ${cause}`),
    });
    await supervisor.start();
    await waitFor(() => supervisor.poolId() === "pool-1", { message: "the first pool to start" });
    // The pool starts shutting down on its own (a failed completion) and hangs there.
    events.emit("pool:gracefulShutdown", { workerPool: pools[0]!, message: "Could not completeJobs; queue is in an inconsistent state; aborting." } as never);
    await waitFor(() => started.length === 2, { message: "a new runner after the forceful shutdown" });
    expect(forced).toEqual([expect.stringMatching(/^pool-1: shutting down on its own did not finish/)]);
    expect(ended).toEqual(["pool-1 restart"]);

    // Stopping: the second pool's stop never returns either; the deadline's forceful stop ends it.
    await waitFor(() => supervisor.poolId() === "pool-2", { message: "the second pool to start" });
    const stopped = supervisor.stop();
    await supervisor.forceStop("the instance is shutting down and its deadline has passed");
    await stopped;
    expect(ended).toEqual(["pool-1 restart", "pool-2 shutdown"]);
    expect(started).toHaveLength(2);
  });

  it("counts as ended a bounded time after its forceful shutdown was asked for, when that shutdown never settles either", async () => {
    // Seen in a chaos run after a database restart: the pool's graceful and forceful shutdowns both
    // failed on their own, the forceful one then waited forever in its final release of the
    // completion batcher (graphile/worker#636), and a second forceful shutdown returns the first's
    // promise. The runner was never restarted, and SIGTERM ran into the exit deadline.
    const events: WorkerEvents = new EventEmitter();
    const started: string[] = [];
    const ended: string[] = [];
    const forced: string[] = [];
    const pools: WorkerPool[] = [];
    const supervisor = new SupervisedRunner({
      name: "main",
      logger: silent(),
      events,
      abandonAfterMs: 50,
      minRestartDelayMs: 10,
      forcedEndWaitMs: 100,
      startRunner: async (plugin) => hangingRunner(plugin, `pool-${started.push("x")}`, forced, pools, true),
      poolStarted: async () => {},
      poolEnded: async (poolId, cause) => void ended.push(`${poolId} ${cause}`),
    });
    await supervisor.start();
    await waitFor(() => supervisor.poolId() === "pool-1", { message: "the first pool to start" });
    events.emit("pool:gracefulShutdown", { workerPool: pools[0]!, message: "Could not completeJobs; queue is in an inconsistent state; aborting." } as never);
    await waitFor(() => started.length === 2, { message: "a new runner although the forceful shutdown never settled" });
    expect(ended).toEqual(["pool-1 restart"]);

    await waitFor(() => supervisor.poolId() === "pool-2", { message: "the second pool to start" });
    const stopped = supervisor.stop();
    const deadlineAt = performance.now();
    await supervisor.forceStop("the instance is shutting down and its deadline has passed");
    await stopped;
    expect(performance.now() - deadlineAt).toBeLessThan(1000);
    expect(ended).toEqual(["pool-1 restart", "pool-2 shutdown"]);
  });
});
