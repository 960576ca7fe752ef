/**
 * The benchmark's no-op task, as both sides of a run know it. A module without dependencies, so the
 * raw graphile-worker subject loads nothing of the service by using it.
 */
import path from "node:path";

export const NOOP_TASK = "bench_noop";
/** Holds bench_noop.ts, loaded beside tasks/ by the service subject (and by the atomic-enqueue helper). */
export const BENCH_TASKS_DIRECTORY = path.join(import.meta.dirname, "../tasks");

/** Where a handler reports its start (with the job's `seq`); the subject sets what happens. */
export const noopProbe = { onRun: (seq: number | undefined): void => void seq };
