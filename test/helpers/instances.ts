/**
 * Service instances as child processes, set up for reliability tests: small heartbeat and rescue
 * thresholds, one database, one fake GBIF. Also what tests read back: an instance's pools and a
 * job's history.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { sql } from "kysely";
import { findJob, type TimelineEvent } from "../../src/lifecycle/jobs.ts";
import type { Db } from "../../src/db/database.ts";
import type { WorkerHeartbeatRow } from "../../src/db/tables/worker-heartbeats.ts";
import { testEnvironment, waitFor } from "./env.ts";
import { startChild, type ChildService } from "./service-process.ts";

/** Thresholds small enough for tests: beats every second, rescue after 3 s of silence. */
export const FAST_RELIABILITY = {
  HEARTBEAT_INTERVAL_MS: "1000",
  RESCUE_AFTER_MS: "3000",
  SWEEP_INTERVAL_MS: "500",
  WORKER_POLL_INTERVAL_MS: "300",
};

export interface Instance extends Omit<ChildService, "waitForStatus"> {
  pid: number;
}

/** The service with the test-only task files too (test/fixtures/tasks), e.g. `block_event_loop`. */
export const WITH_TEST_TASKS = "test/helpers/service-entry.ts";

/**
 * Starts `node src/main.ts` (or `entry`) on a port the kernel picks (a port chosen beforehand could
 * be taken by an instance of another test file running in parallel) and waits until it is ready.
 */
export async function startInstance(databaseUrl: string, gbifUrl: string, overrides: Record<string, string> = {}, entry = "src/main.ts"): Promise<Instance> {
  const service = startChild(
    [entry],
    testEnvironment({ DATABASE_URL: databaseUrl, GBIF_BASE_URL: gbifUrl, PORT: "0", LOG_LEVEL: "info", ...FAST_RELIABILITY, ...overrides }),
  );
  try {
    await service.waitForStatus("/readyz", 200, 60_000);
  } catch (error) {
    service.kill("SIGKILL");
    throw new Error(`${(error as Error).message}; the instance said:\n${service.output().split("\n").slice(-12).map((line) => line.slice(0, 300)).join("\n")}`, { cause: error });
  }
  const instance = { ...service, baseUrl: service.baseUrl, pid: service.child.pid! };
  return instance;
}

/** Stops an instance that is still running (SIGKILL: cleanup after a failed test must not wait). */
export async function killInstance(instance: Instance | undefined): Promise<void> {
  if (!instance || instance.child.exitCode !== null || instance.child.signalCode !== null) return;
  instance.kill("SIGKILL");
  await instance.exited;
}

export async function findPools(db: Db, pid: number): Promise<WorkerHeartbeatRow[]> {
  return db.selectFrom("observing_jobs.worker_heartbeats").selectAll().where("pid", "=", pid).orderBy("started_at").execute();
}

/** The job's timeline as the API shows it: stored events and those its record implies. */
export async function findEvents(db: Db, jobId: string): Promise<TimelineEvent[]> {
  return (await findJob(db, jobId))?.timeline ?? [];
}

/** The job's record says it succeeded and graphile-worker no longer has it. */
export async function hasSucceeded(db: Db, jobId: string): Promise<boolean> {
  const { rows } = await sql<{ done: boolean }>`
    select exists (select 1 from observing_jobs.job_records where id = ${jobId} and phase = 'succeeded')
       and not exists (select 1 from graphile_worker.jobs where id = ${jobId}) as done`.execute(db);
  return rows[0]!.done;
}

/** Readiness as the instance reports it. */
export async function readiness(instance: Pick<ChildService, "baseUrl">): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(`${instance.baseUrl}/readyz`);
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

/** The instance whose pool started the job's latest attempt (both run the same tasks). */
export async function holderOf(db: Db, jobId: string, instances: Instance[]): Promise<{ holder: Instance; other: Instance; poolId: string }> {
  const started = await waitFor(async () => (await findEvents(db, jobId)).findLast((event) => event.event === "started"), { message: "the job to start" });
  const pool = await db.selectFrom("observing_jobs.worker_heartbeats").select(["pid"]).where("pool_id", "=", started.worker_id!).executeTakeFirstOrThrow();
  const holder = instances.find((instance) => instance.pid === pool.pid)!;
  return { holder, other: instances.find((instance) => instance !== holder)!, poolId: started.worker_id! };
}

/** Holds the process still (as a VM pause or a long stop-the-world pause would), then lets it go on. */
export async function freeze(instance: Instance, ms: number): Promise<void> {
  instance.kill("SIGSTOP");
  try {
    await sleep(ms);
  } finally {
    instance.kill("SIGCONT");
  }
}
