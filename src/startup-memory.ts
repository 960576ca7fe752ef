/**
 * One memory-reducing collection once start-up is over, in each V8 isolate of the process: the main
 * thread's here, the heartbeat thread's through src/reliability/heartbeat.ts.
 *
 * Loading the service's modules allocates far more than it keeps. V8 ends start-up with the young
 * generation grown to its cap and the pages its collections freed kept in a pool for reuse rather
 * than returned to the system, and it starts the kind of collection that returns them (V8's "last
 * resort": every generation, pools released, the young generation shrunk) only under memory
 * pressure, which an idle instance never feels; its ordinary full collections keep both. Measured
 * on the image's command (docs/BENCHMARKS.md, Footprint, 2026-12-03): idle RSS ~125 -> ~105 MB, for
 * one pause of 50-62 ms on the main thread and 17-33 ms on the heartbeat thread, once; before its
 * own, the main thread also waits (blocked, at most 200 ms, in practice under a millisecond) for the
 * heartbeat thread to reach its collector.
 *
 * V8 offers that collection only through its `gc` extension, installed in contexts created while
 * `--expose-gc` is on. Only the main thread writes the flag (V8's flags are process-wide), on for
 * as long as it takes to create the contexts that get `gc` and off again, and it runs nothing else
 * meanwhile, so no code on the main thread, the service's or a task's, sees a global `gc` (unless
 * Node was started with the flag, which is then left alone). The one exception: a worker thread
 * that task code started just before, whose context V8 happens to create inside that window (at
 * most 200 ms, once per process), gets `gc` too; calling it is harmless, only a full collection. Node documents changing V8 flags at run time as unsupported
 * in general; it keeps them unfrozen so that `v8.setFlagsFromString` works, and this flag is read
 * only when a context is created. test/startup-memory.test.ts fails if a Node upgrade changes that.
 */
import v8 from "node:v8";
import vm from "node:vm";

/** What one collection returned, in MB: the isolate's heap and young generation (physical), the process's RSS. */
export interface MemoryRelease {
  heapMb: { before: number; after: number };
  youngGenerationMb: { before: number; after: number };
  rssMb: { before: number; after: number };
  tookMs: number;
}

export type Collector = (options: { type: "major"; execution: "sync"; flavor: "last-resort" }) => void;

/** Main thread only: the collection in this isolate, now and synchronously; null where V8's collector cannot be reached. */
export function releaseStartupMemory(): MemoryRelease | null {
  const collector = exposingGc(reachCollector);
  return collector ? collect(collector) : null;
}

/**
 * Main thread only: runs `during` with `--expose-gc` on, so that contexts created meanwhile (in this
 * isolate or, while `during` waits for it, another) get V8's collector.
 */
export function exposingGc<T>(during: () => T): T {
  if (typeof (globalThis as { gc?: unknown }).gc === "function") return during();
  try {
    v8.setFlagsFromString("--expose-gc");
    return during();
  } finally {
    v8.setFlagsFromString("--no-expose-gc");
  }
}

/** Any thread: V8's collector for this isolate, from a new context; null unless the flag is on (or the process started with it). */
export function reachCollector(): Collector | null {
  const exposed = (globalThis as { gc?: unknown }).gc;
  if (typeof exposed === "function") return exposed as Collector;
  try {
    return vm.runInNewContext("typeof gc === 'function' ? gc : null") as Collector | null;
  } catch {
    return null;
  }
}

/** Any thread: one memory-reducing collection of this isolate with the collector `reachCollector` gave. */
export function collect(collector: Collector): MemoryRelease {
  const before = { heap: v8.getHeapStatistics().total_physical_size, young: youngGeneration(), rss: process.memoryUsage.rss() };
  const started = performance.now();
  collector({ type: "major", execution: "sync", flavor: "last-resort" });
  const tookMs = performance.now() - started;
  return {
    heapMb: { before: toMb(before.heap), after: toMb(v8.getHeapStatistics().total_physical_size) },
    youngGenerationMb: { before: toMb(before.young), after: toMb(youngGeneration()) },
    rssMb: { before: toMb(before.rss), after: toMb(process.memoryUsage.rss()) },
    tookMs: Math.round(tookMs * 10) / 10,
  };
}

function youngGeneration(): number {
  return v8.getHeapSpaceStatistics().find((space) => space.space_name === "new_space")?.physical_space_size ?? 0;
}

function toMb(bytes: number): number {
  return Math.round((bytes / 1048576) * 10) / 10;
}
