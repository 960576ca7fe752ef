/** What every scenario gets: the database server, the run's sizes, and how to start a subject. */
import { POOL_OVERHEAD } from "../../src/db/database.ts";
import type { SubjectOptions } from "../subject.ts";
import { OUT_OF_THE_BOX } from "./out-of-the-box.ts";
import type { BenchDatabase, BenchServer, System } from "./database.ts";
import { SubjectProcess, type SpawnOptions } from "./subject-process.ts";

/** How much of everything a run does; `--quick` shrinks it for development. */
export interface Plan {
  quick: boolean;
  concurrency: number;
  pollIntervalMs: number;
  /** Callers of the in-process enqueue loads, and connections of the HTTP load. */
  enqueueCallers: number;
  batchCallers: number;
  batchSize: number;
  throughputJobs: number;
  throughputRounds: number;
  localQueueSize: number;
  latencyJobs: number;
  latencyWarmup: number;
  latencyIntervalMs: number;
  latencyRounds: number;
  enqueueWarmupMs: number;
  enqueueDurationMs: number;
  enqueueRounds: number;
  idleWindows: number;
  idleWindowMs: number;
  coldStartRounds: number;
  /** How long a started process idles before its RSS is read (footprint). */
  footprintIdleMs: number;
  taxa: number;
  gbifDelayMs: number;
  resolveRounds: number;
}

export function makePlan(quick: boolean): Plan {
  return {
    quick,
    concurrency: 10,
    pollIntervalMs: 2000,
    enqueueCallers: 10,
    batchCallers: 4,
    batchSize: 1000,
    throughputJobs: quick ? 5000 : 20_000,
    throughputRounds: quick ? 2 : 4,
    localQueueSize: 1000,
    latencyJobs: quick ? 100 : 300,
    latencyWarmup: 20,
    latencyIntervalMs: 10,
    latencyRounds: quick ? 2 : 4,
    enqueueWarmupMs: quick ? 500 : 1000,
    enqueueDurationMs: quick ? 1500 : 4000,
    enqueueRounds: quick ? 2 : 3,
    idleWindows: 3,
    idleWindowMs: quick ? 5000 : 20_000,
    coldStartRounds: quick ? 2 : 5,
    footprintIdleMs: quick ? 3000 : 10_000,
    taxa: quick ? 60 : 200,
    gbifDelayMs: 50,
    resolveRounds: quick ? 1 : 3,
  };
}

export const API_TOKEN = "bench-token-0123456789abcdef";

export interface BenchContext {
  server: BenchServer;
  plan: Plan;
  spawn: SpawnOptions;
  log(message: string): void;
}

export function subjectOptions(plan: Plan, system: System, database: BenchDatabase, overrides: Partial<SubjectOptions> = {}): SubjectOptions {
  return {
    system,
    databaseUrl: database.url,
    concurrency: plan.concurrency,
    // The service's pool for its main runner: every slot, the LISTEN connection and the fixed overhead.
    rawPoolSize: plan.concurrency + 1 + POOL_OVERHEAD,
    appPoolSize: Math.max(plan.enqueueCallers, plan.batchCallers),
    // Scenarios other than throughput's explicit configurations run each system as it comes.
    localQueueSize: OUT_OF_THE_BOX,
    pollIntervalMs: plan.pollIntervalMs,
    apiToken: API_TOKEN,
    ...overrides,
  };
}

/** Both systems in turn, raw first in even rounds and the service first in odd ones, so drift hits both alike. */
export function systemsInOrder(round: number): System[] {
  return round % 2 === 0 ? ["raw", "service"] : ["service", "raw"];
}

/** A fresh database and a started subject on it; both are cleaned up whatever `work` does. */
export async function withSubject<T>(
  context: BenchContext,
  system: System,
  label: string,
  overrides: Partial<SubjectOptions>,
  work: (subject: SubjectProcess, database: BenchDatabase) => Promise<T>,
): Promise<T> {
  const database = await context.server.clone(`${label}_${system}`, system);
  try {
    const subject = await SubjectProcess.start(subjectOptions(context.plan, system, database, overrides), context.spawn);
    try {
      return await work(subject, database);
    } finally {
      await subject.stop();
    }
  } finally {
    await context.server.drop(database);
  }
}
